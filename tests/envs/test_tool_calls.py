from __future__ import annotations

import pytest

from opd.envs import FinalAnswer, HermesFormat, ParseError, ParseErrorKind, ToolCall, ToolCalls
from opd.envs.tool_calls import decode_action

FMT = HermesFormat(max_calls=2)


def test_one_call() -> None:
    text = 'Let me add.\n<tool_call>{"name": "add", "arguments": {"a": 1, "b": 2}}</tool_call>'
    assert FMT.parse(text) == ToolCalls((ToolCall("add", {"a": 1, "b": 2}),))


def test_two_calls_and_arguments_as_a_json_string() -> None:
    text = '<tool_call>{"name": "a", "arguments": {}}</tool_call><tool_call>{"name": "b", "arguments": "{\\"x\\": 1}"}</tool_call>'
    assert FMT.parse(text) == ToolCalls((ToolCall("a", {}), ToolCall("b", {"x": 1})))


def test_text_without_a_call_is_a_final_answer() -> None:
    assert FMT.parse("  The answer is 42.\n") == FinalAnswer("The answer is 42.")


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ('<tool_call>{"name": "add", "arguments": {"a": 1}', ParseErrorKind.UNTERMINATED),
        ('{"name": "add"}</tool_call>', ParseErrorKind.UNTERMINATED),
        ("<tool_call>{name: add}</tool_call>", ParseErrorKind.BAD_JSON),
        ("<tool_call>" + "[" * 100_000 + "</tool_call>", ParseErrorKind.BAD_JSON),
        ('<tool_call>["add"]</tool_call>', ParseErrorKind.BAD_CALL_SHAPE),
        ('<tool_call>{"name": 3, "arguments": {}}</tool_call>', ParseErrorKind.BAD_CALL_SHAPE),
        ('<tool_call>{"name": "add", "arguments": [1, 2]}</tool_call>', ParseErrorKind.BAD_CALL_SHAPE),
        ('<tool_call>{"name": "add", "arguments": {}, "extra": 1}</tool_call>', ParseErrorKind.BAD_CALL_SHAPE),
        ('<tool_call>{"name": "a", "arguments": {}}</tool_call>' * 3, ParseErrorKind.TOO_MANY_CALLS),
    ],
)
def test_malformed_calls_are_parse_errors(text: str, kind: str) -> None:
    parsed = FMT.parse(text)
    assert isinstance(parsed, ParseError) and parsed.kind == kind
    assert parsed.message


@pytest.mark.parametrize(
    ("raw", "kind"),
    [
        ("", ParseErrorKind.EMPTY),
        (" \n\t", ParseErrorKind.EMPTY),
        ("x" * 101, ParseErrorKind.TOO_LONG),
        (b"\xff\xfe caf\xe9", ParseErrorKind.INVALID_UTF8),
        (b"ok \xed\xa0\x80", ParseErrorKind.INVALID_UTF8),  # an encoded surrogate is not UTF-8
        ("lone \udcff surrogate", ParseErrorKind.INVALID_UTF8),
    ],
)
def test_undecodable_actions(raw: str | bytes, kind: str) -> None:
    decoded = decode_action(raw, max_chars=100)
    assert isinstance(decoded, ParseError) and decoded.kind == kind


def test_valid_bytes_decode() -> None:
    assert decode_action("café".encode(), max_chars=100) == "café"


def test_format_round_trips_through_parse() -> None:
    action = ToolCalls((ToolCall("order", {"sku": "SKU-1", "quantity": 3}), ToolCall("done", {})))
    assert FMT.parse(FMT.format(action)) == action
    assert FMT.parse(FMT.format(FinalAnswer("42"))) == FinalAnswer("42")
