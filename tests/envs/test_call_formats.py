"""Tool-call formats other than Hermes, and choosing one from a chat template."""

from __future__ import annotations

import json

import pytest

from opd.envs import FinalAnswer, HermesFormat, Llama3JsonFormat, ParseError, ToolCall, ToolCalls, call_format_for_template
from opd.envs.tool_calls import ParseErrorKind
from opd.errors import ConfigError

LLAMA = Llama3JsonFormat()


@pytest.mark.parametrize("arguments", [{"a": 1, "b": 2}, {}, {"text": 'naïve "quotes" and\nnewlines'}, {"nested": {"x": [1, 2.5, None]}}])
def test_llama_calls_round_trip_exactly(arguments) -> None:
    call = ToolCalls((ToolCall("add", arguments),))
    text = LLAMA.format(call)
    assert text == '{"name": "add", "parameters": ' + json.dumps(arguments, ensure_ascii=False) + "}"  # as the template writes it
    assert LLAMA.parse(text) == call
    assert LLAMA.format(LLAMA.parse(text)) == text


def test_llama_parses_what_models_also_write() -> None:
    assert LLAMA.parse('<|python_tag|>{"name": "add", "arguments": {"a": 1}}') == ToolCalls((ToolCall("add", {"a": 1}),))
    assert LLAMA.parse("  The answer is 42. ") == FinalAnswer("The answer is 42.")


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ('{"name": "add", "parameters": {"a": 1}', ParseErrorKind.BAD_JSON),
        ('[{"name": "add", "parameters": {}}, {"name": "mul", "parameters": {}}]', ParseErrorKind.TOO_MANY_CALLS),
        ('{"parameters": {}}', ParseErrorKind.BAD_CALL_SHAPE),
        ('{"name": "add", "parameters": [1]}', ParseErrorKind.BAD_CALL_SHAPE),
    ],
)
def test_llama_malformed_calls_are_parse_errors(text, kind) -> None:
    parsed = LLAMA.parse(text)
    assert isinstance(parsed, ParseError) and parsed.kind == kind


def test_llama_format_refuses_two_calls_in_a_turn() -> None:
    with pytest.raises(ConfigError, match="one call per turn"):
        LLAMA.format(ToolCalls((ToolCall("a", {}), ToolCall("b", {}))))


def test_the_format_follows_the_template_unless_named() -> None:
    hermes_template = "{{ '<tool_call>\\n' }}"
    llama_template = "{{- '<|start_header_id|>ipython<|end_header_id|>' }}{{- '\"parameters\": ' }}"
    assert isinstance(call_format_for_template(hermes_template), HermesFormat)
    assert isinstance(call_format_for_template(llama_template), Llama3JsonFormat)
    assert isinstance(call_format_for_template(None), HermesFormat)  # opd's fallback template is Hermes-style
    assert isinstance(call_format_for_template(hermes_template, "llama3_json"), Llama3JsonFormat)
    with pytest.raises(ConfigError, match="Did you mean 'llama3_json'"):
        call_format_for_template(None, "llama_json")
