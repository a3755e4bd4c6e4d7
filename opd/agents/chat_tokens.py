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

import functools
import logging
from collections.abc import Sequence
from typing import Any

from transformers import PreTrainedTokenizerBase

from opd.envs import render_prompt
from opd.envs.call_formats import call_format_for_template
from opd.envs.tool_calls import ToolCallFormat
from opd.errors import ConfigError

__all__ = ["ChatTokens"]

logger = logging.getLogger(__name__)

_PROBE_USER = "\u2063probe-user\u2063"
_PROBE_ASSISTANT = "\u2063probe-assistant\u2063"


class ChatTokens:
    """Renders prompt and observation tokens for one tokenizer and chat template."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase) -> None:
        self.tokenizer = tokenizer
        if tokenizer.eos_token_id is None:
            raise ConfigError(f"Tokenizer {tokenizer.name_or_path!r} has no eos token; opd needs one to end a turn.")
        self.closing = self._assistant_closing()  # the text the template writes after an assistant message
        self.closing_ids = self.encode(self.closing)
        self.end_of_turn_id = self.closing_ids[0] if self.closing_ids else tokenizer.eos_token_id
        tool_call_end = tokenizer.convert_tokens_to_ids("</tool_call>")
        self.stop_ids = sorted(
            {self.end_of_turn_id, tokenizer.eos_token_id} | ({tool_call_end} if _is_token(tokenizer, tool_call_end) else set())
        )
        if self.rewrites_earlier_turns:
            logger.info(
                "The chat template of %r rewrites earlier assistant turns once another message follows (as Qwen3's drops "
                "reasoning); opd keeps the tokens each turn was generated from, so a whole-episode re-rendering would differ.",
                tokenizer.name_or_path,
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
        """What the template writes after a finished assistant turn for ``messages``, up to the next generation prompt.

        Cut after the probe assistant turn and its closing rather than after a rendering of the
        conversation without ``messages``: a template that rewrites earlier turns once a message
        follows them (Qwen3 drops or empties reasoning blocks) changes text *before* the cut, never
        after it. The tokens already recorded are kept as the model saw them (see ``rewrites_earlier_turns``).
        """
        base = [{"role": "user", "content": _PROBE_USER}, {"role": "assistant", "content": _PROBE_ASSISTANT}]
        after = render_prompt(self.tokenizer, [*base, *messages], tools, add_generation_prompt=True)
        marker = _PROBE_ASSISTANT + self.closing
        if marker not in after:
            raise ConfigError(
                f"The chat template of {self.tokenizer.name_or_path!r} rewrites earlier turns so that an assistant turn "
                f"no longer appears as the model wrote it, followed by {self.closing!r}, once a message follows it; "
                "observation tokens cannot be appended incrementally. Use a template that keeps earlier turns' text."
            )
        return after.split(marker, 1)[1]

    @functools.cached_property
    def call_format(self) -> ToolCallFormat:
        """The tool-call format this tokenizer's chat template renders (Hermes for opd's fallback template)."""
        return call_format_for_template(self.tokenizer.chat_template)

    @functools.cached_property
    def rewrites_earlier_turns(self) -> bool:
        """Whether the template renders a finished assistant turn differently once another message follows it.

        Such a template (Qwen3's reasoning template) never renders the whole episode as the model
        saw it turn by turn. opd keeps what the model saw: each turn's context is exactly the
        template's prompt at that turn, and the teacher scores those tokens.
        """
        base = [{"role": "user", "content": _PROBE_USER}, {"role": "assistant", "content": _PROBE_ASSISTANT}]
        alone = render_prompt(self.tokenizer, base, None, add_generation_prompt=False)
        followed = render_prompt(self.tokenizer, [*base, {"role": "user", "content": _PROBE_USER}], None, add_generation_prompt=False)
        return not followed.startswith(alone)


def _is_token(tokenizer: PreTrainedTokenizerBase, token_id: int | None) -> bool:
    return token_id is not None and token_id != tokenizer.unk_token_id
