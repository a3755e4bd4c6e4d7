"""Token-in, token-out bookkeeping for multi-turn chats.

An episode's tokens are built once and only ever appended to: the prompt is
rendered by the chat template and tokenised at the start; each turn appends
the tokens the policy generated, then the tokens of the env's answer, rendered
by the same template and tokenised on their own. Earlier tokens are never
re-tokenised from text, because a template round trip can merge or split
tokens differently from what the policy produced (multi-turn drift), and the
teacher must score exactly what the student conditioned on.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from transformers import PreTrainedTokenizerBase

from opd.envs import render_prompt
from opd.errors import ConfigError

__all__ = ["ChatTokens"]

_PROBE_USER = "\u2063probe-user\u2063"
_PROBE_ASSISTANT = "\u2063probe-assistant\u2063"


class ChatTokens:
    """Renders prompt and observation tokens for one tokenizer and chat template."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase) -> None:
        self.tokenizer = tokenizer
        if tokenizer.eos_token_id is None:
            raise ConfigError(f"Tokenizer {tokenizer.name_or_path!r} has no eos token; opd needs one to end a turn.")
        closing = self._assistant_closing()
        self.closing_ids = self.encode(closing)  # what the template writes after an assistant message
        self.end_of_turn_id = self.closing_ids[0] if self.closing_ids else tokenizer.eos_token_id
        tool_call_end = tokenizer.convert_tokens_to_ids("</tool_call>")
        self.stop_ids = sorted(
            {self.end_of_turn_id, tokenizer.eos_token_id} | ({tool_call_end} if _is_token(tokenizer, tool_call_end) else set())
        )

    def encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False).input_ids

    def prompt_ids(self, messages: Sequence[dict[str, Any]], tools: Sequence[dict[str, Any]] | None) -> list[int]:
        """The first context: system and user messages, the tools, and the generation prompt."""
        return self.encode(render_prompt(self.tokenizer, messages, tools, add_generation_prompt=True))

    def action_text(self, generated: Sequence[int]) -> str:
        """The policy's text for the env: its tokens decoded, without a final end-of-turn token."""
        ids = list(generated)
        if ids and ids[-1] in (self.end_of_turn_id, self.tokenizer.eos_token_id):
            ids = ids[:-1]
        return self.tokenizer.decode(ids, skip_special_tokens=False)

    def observation_ids(
        self, generated: Sequence[int], messages: Sequence[dict[str, Any]], tools: Sequence[dict[str, Any]] | None
    ) -> list[int]:
        """Tokens to append after a generated turn: the turn's closing, the env's ``messages`` and the next generation prompt."""
        ended = bool(generated) and generated[-1] == self.end_of_turn_id
        closing = self.closing_ids[1:] if ended else self.closing_ids
        return [*closing, *self.encode(self._render_delta(messages, tools))]

    def _assistant_closing(self) -> str:
        base = [{"role": "user", "content": _PROBE_USER}]
        with_answer = render_prompt(
            self.tokenizer, [*base, {"role": "assistant", "content": _PROBE_ASSISTANT}], None, add_generation_prompt=False
        )
        return with_answer.split(_PROBE_ASSISTANT, 1)[1] if _PROBE_ASSISTANT in with_answer else ""

    def _render_delta(self, messages: Sequence[dict[str, Any]], tools: Sequence[dict[str, Any]] | None) -> str:
        base = [{"role": "user", "content": _PROBE_USER}, {"role": "assistant", "content": _PROBE_ASSISTANT}]
        before = render_prompt(self.tokenizer, base, tools, add_generation_prompt=False)
        after = render_prompt(self.tokenizer, [*base, *messages], tools, add_generation_prompt=True)
        if not after.startswith(before):
            raise ConfigError(
                f"The chat template of {self.tokenizer.name_or_path!r} rewrites earlier turns when a message is added, "
                "so observation tokens cannot be appended incrementally. Use a template that only appends."
            )
        return after[len(before) :]


def _is_token(tokenizer: PreTrainedTokenizerBase, token_id: int | None) -> bool:
    return token_id is not None and token_id != tokenizer.unk_token_id
