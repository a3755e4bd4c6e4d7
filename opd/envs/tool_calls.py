"""The tool-call protocol: model text in, exactly one parsed action out.

A model's turn is parsed into one of three things:

* :class:`ToolCalls` - one or more calls to run;
* :class:`FinalAnswer` - text with no tool call, which ends the episode;
* :class:`ParseError` - anything malformed, with a kind and a message for the model.

Parsing never raises: malformed output is the model's mistake and becomes an
error observation. The default format is Hermes/Qwen style::

    <tool_call>{"name": "add", "arguments": {"a": 1, "b": 2}}</tool_call>

Other formats plug in through the :class:`ToolCallFormat` protocol.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "Action",
    "FinalAnswer",
    "HermesFormat",
    "ParseError",
    "ParseErrorKind",
    "ToolCall",
    "ToolCallFormat",
    "ToolCalls",
    "decode_action",
]


@dataclasses.dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: Mapping[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "arguments": dict(self.arguments)}


@dataclasses.dataclass(frozen=True)
class ToolCalls:
    calls: tuple[ToolCall, ...]


@dataclasses.dataclass(frozen=True)
class FinalAnswer:
    text: str


class ParseErrorKind:
    """The kinds of malformed output; each is counted separately in ``info``."""

    EMPTY = "empty"
    TOO_LONG = "too_long"
    INVALID_UTF8 = "invalid_utf8"
    BAD_JSON = "bad_json"
    BAD_CALL_SHAPE = "bad_call_shape"
    UNTERMINATED = "unterminated_tag"
    TOO_MANY_CALLS = "too_many_calls"
    UNKNOWN_TOOL = "unknown_tool"


@dataclasses.dataclass(frozen=True)
class ParseError:
    kind: str
    message: str


Action = ToolCalls | FinalAnswer | ParseError


@runtime_checkable
class ToolCallFormat(Protocol):
    """How tool calls are written in model text: parse it, and write it (for scripted experts)."""

    def parse(self, text: str) -> ToolCalls | FinalAnswer | ParseError: ...

    def format(self, action: ToolCalls | FinalAnswer) -> str: ...


def decode_action(action: str | bytes, *, max_chars: int) -> str | ParseError:
    """Turn a raw action into text, or a ParseError for empty, huge or non-UTF-8 input."""
    if isinstance(action, bytes | bytearray):
        if len(action) > 4 * max_chars:
            return _too_long(len(action), max_chars)
        try:
            action = bytes(action).decode("utf-8")
        except UnicodeDecodeError as exc:
            return ParseError(ParseErrorKind.INVALID_UTF8, f"Your output is not valid UTF-8 ({exc.reason} at byte {exc.start}).")
    if not isinstance(action, str):
        return ParseError(ParseErrorKind.BAD_CALL_SHAPE, f"Expected text, got {type(action).__name__}.")
    if len(action) > max_chars:
        return _too_long(len(action), max_chars)
    try:  # lone surrogates come from decoding invalid bytes with errors="surrogateescape"
        action.encode("utf-8")
    except UnicodeEncodeError:
        return ParseError(ParseErrorKind.INVALID_UTF8, "Your output contains invalid UTF-8 (lone surrogate characters).")
    if not action.strip():
        return ParseError(ParseErrorKind.EMPTY, "Your output was empty. Call a tool or give your final answer.")
    return action


def _too_long(size: int, max_chars: int) -> ParseError:
    return ParseError(ParseErrorKind.TOO_LONG, f"Your output has {size} characters; the limit is {max_chars}. Be brief.")


@dataclasses.dataclass(frozen=True)
class HermesFormat:
    """``<tool_call>{json}</tool_call>`` blocks, as Hermes and Qwen chat templates emit them.

    Text with no ``<tool_call>`` tag is a final answer. Text around tool calls
    (e.g. reasoning) is allowed and ignored.
    """

    max_calls: int = 4
    open_tag: str = "<tool_call>"
    close_tag: str = "</tool_call>"

    def parse(self, text: str) -> ToolCalls | FinalAnswer | ParseError:
        if self.open_tag not in text:
            if self.close_tag in text:
                return ParseError(ParseErrorKind.UNTERMINATED, f"Found {self.close_tag} without a matching {self.open_tag}.")
            return FinalAnswer(text.strip())
        bodies = []
        rest = text
        while (start := rest.find(self.open_tag)) != -1:
            end = rest.find(self.close_tag, start)
            if end == -1:
                return ParseError(
                    ParseErrorKind.UNTERMINATED,
                    f'A {self.open_tag} was not closed. Write {self.open_tag}{{"name": ..., "arguments": {{...}}}}{self.close_tag}.',
                )
            bodies.append(rest[start + len(self.open_tag) : end])
            rest = rest[end + len(self.close_tag) :]
        if len(bodies) > self.max_calls:
            return ParseError(
                ParseErrorKind.TOO_MANY_CALLS, f"You made {len(bodies)} tool calls in one turn; the limit is {self.max_calls}."
            )
        calls = []
        for body in bodies:
            call = _parse_call_json(body)
            if isinstance(call, ParseError):
                return call
            calls.append(call)
        return ToolCalls(tuple(calls))

    def format(self, action: ToolCalls | FinalAnswer) -> str:
        if isinstance(action, FinalAnswer):
            return action.text
        return "\n".join(f"{self.open_tag}\n{json.dumps(call.to_dict(), ensure_ascii=False)}\n{self.close_tag}" for call in action.calls)


def _parse_call_json(body: str) -> ToolCall | ParseError:
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError) as exc:  # ValueError covers JSONDecodeError and over-long integers
        detail = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc) or "nesting too deep"
        return ParseError(
            ParseErrorKind.BAD_JSON,
            f'The tool call is not valid JSON ({detail}). Write {{"name": "TOOL", "arguments": {{...}}}}.',
        )
    if not isinstance(payload, dict) or not isinstance(payload.get("name"), str):
        return ParseError(
            ParseErrorKind.BAD_CALL_SHAPE, 'A tool call must be a JSON object with a string "name" and an object "arguments".'
        )
    arguments = payload.get("arguments", payload.get("parameters", {}))
    if isinstance(arguments, str):  # some models emit arguments as a JSON-encoded string, as the OpenAI API does
        with contextlib.suppress(ValueError, RecursionError):  # if it stays a string, it is reported below
            arguments = json.loads(arguments)
    if not isinstance(arguments, dict):
        return ParseError(ParseErrorKind.BAD_CALL_SHAPE, f'"arguments" must be a JSON object, got {type(arguments).__name__}.')
    extra = set(payload) - {"name", "arguments", "parameters", "id"}
    if extra:
        return ParseError(
            ParseErrorKind.BAD_CALL_SHAPE, f'Unexpected keys in the tool call: {sorted(extra)}; use only "name" and "arguments".'
        )
    return ToolCall(payload["name"], arguments)


def single_call(tool: str, /, **arguments: Any) -> ToolCalls:
    """One call to ``tool``: what a scripted expert usually does in a turn (``tool`` is positional, so an
    argument may itself be called ``name`` or ``tool``)."""
    return ToolCalls((ToolCall(tool, arguments),))
