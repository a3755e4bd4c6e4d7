"""Tool-call formats beyond Hermes, and the choice of format from a model's chat template.

A model writes tool calls the way its chat template renders them, and opd must
parse exactly that and, for scripted experts, write it back exactly (so an
expert's tokens are the tokens the template would produce):

* ``hermes`` (:class:`~opd.envs.tool_calls.HermesFormat`): Hermes, Qwen2.5, Qwen3 and
  opd's fallback template, ``<tool_call>\\n{"name": ..., "arguments": {...}}\\n</tool_call>``;
* ``llama3_json`` (:class:`Llama3JsonFormat`): Llama 3.1/3.2/3.3's custom tools, the
  whole turn one JSON object ``{"name": ..., "parameters": {...}}``; its results come
  back in the ``ipython`` role, which the template writes for ``tool`` messages.

``call_format_for_template`` picks one from the template text; a config can name
one instead.
"""

from __future__ import annotations

import dataclasses
import difflib
import json

from opd.envs.tool_calls import (
    FinalAnswer,
    HermesFormat,
    ParseError,
    ParseErrorKind,
    ToolCallFormat,
    ToolCalls,
    _parse_call_json,
)
from opd.errors import ConfigError

__all__ = ["CALL_FORMATS", "Llama3JsonFormat", "call_format_for_template", "make_call_format"]

_PYTHON_TAG = "<|python_tag|>"


@dataclasses.dataclass(frozen=True)
class Llama3JsonFormat:
    """Llama 3.1's JSON tool calls: a turn that is one JSON object with "name" and "parameters" is a call.

    Any other text is a final answer. A turn that starts like a call (``{``) but is not
    valid JSON is a parse error, since the model evidently tried to call a tool. The
    template renders one call per assistant turn, so this format writes only one.
    """

    max_calls: int = 1

    def parse(self, text: str) -> ToolCalls | FinalAnswer | ParseError:
        body = text.strip().removeprefix(_PYTHON_TAG).strip()
        if not body.startswith(("{", "[")):
            return FinalAnswer(text.strip())
        try:
            payload = json.loads(body)
        except (ValueError, RecursionError):
            payload = None
        if isinstance(payload, list):
            return ParseError(ParseErrorKind.TOO_MANY_CALLS, "Call one tool per turn: write a single JSON object, not a list.")
        call = _parse_call_json(body)
        if isinstance(call, ParseError):
            return dataclasses.replace(call, message=call.message.replace('"arguments"', '"parameters"'))
        return ToolCalls((call,))

    def format(self, action: ToolCalls | FinalAnswer) -> str:
        if isinstance(action, FinalAnswer):
            return action.text
        if len(action.calls) != 1:
            raise ConfigError(f"Llama 3.1's JSON tool-call format holds one call per turn; this action has {len(action.calls)}.")
        call = action.calls[0]
        return json.dumps({"name": call.name, "parameters": dict(call.arguments)}, ensure_ascii=False)


CALL_FORMATS: dict[str, type[ToolCallFormat]] = {"hermes": HermesFormat, "llama3_json": Llama3JsonFormat}


def make_call_format(name: str) -> ToolCallFormat:
    """The format registered as ``name``; a typo gets the close name."""
    if name not in CALL_FORMATS:
        close = difflib.get_close_matches(name, CALL_FORMATS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"Unknown tool-call format {name!r}; known: {sorted(CALL_FORMATS)} or 'auto'.{hint}")
    return CALL_FORMATS[name]()


def call_format_for_template(template: str | None, name: str = "auto") -> ToolCallFormat:
    """The tool-call format a chat template renders (``name="auto"``), or the one ``name`` chooses.

    ``auto``: a template that writes ``<tool_call>`` is Hermes-style; one that writes
    ``"parameters": `` after the tool name (Llama 3.x) is ``llama3_json``; anything else,
    and a model without a template (opd's fallback template), is Hermes-style.
    """
    if name != "auto":
        return make_call_format(name)
    text = template or ""
    if "<tool_call>" in text:
        return HermesFormat()
    if '"parameters": ' in text and "ipython" in text:
        return Llama3JsonFormat()
    return HermesFormat()
