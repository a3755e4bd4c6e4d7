"""Per-token views of a step: each token the policy wrote, its text, and how far the student was from the teacher on it.

The store keeps token ids, not texts (token-in, token-out). Texts come from the
episode's own tokenizer file when it is on this machine (``tokenizer.json`` in
the directory the episode names), read with the ``tokenizers`` library; without
it the viewer shows ids. Each token is decoded after a few tokens of its context
and the context's text is cut off again, so leading spaces and characters that
span several tokens come out as the model wrote them.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from opd.trajectories.inspection import sampled_teacher_logprobs
from opd.trajectories.records import Step, TokenLogprobs

__all__ = ["DIVERGENCE_BINS", "TokenDecoder", "TokenView", "load_decoder", "token_views"]

logger = logging.getLogger(__name__)

# Upper edges (nats) of the colour bins of log q(x) - log p(x), student minus teacher on the sampled token x.
# Below -1 the teacher liked the token more than the student did; above 4 the teacher all but ruled it out.
DIVERGENCE_BINS = (-1.0, 0.25, 1.0, 2.0, 4.0)
ALTERNATIVES = 5  # teacher alternatives shown per token
_CONTEXT = 4  # tokens decoded before each token, then cut off again


class TokenDecoder:
    """Token texts from a ``tokenizers`` tokenizer; ids outside its vocabulary show as ``#id``."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        self._tokenizer = tokenizer
        self._vocab_size = tokenizer.get_vocab_size(with_added_tokens=True)

    def texts(self, context: list[int], tokens: list[int]) -> list[str]:
        """The text each of ``tokens`` would add after ``context`` (the few ids before it)."""
        context = [t for t in context if 0 <= t < self._vocab_size]
        before = self._tokenizer.decode(context, skip_special_tokens=False)
        return [self._after(context, before, token) for token in tokens]

    def _after(self, context: list[int], before: str, token: int) -> str:
        if not 0 <= token < self._vocab_size:
            return f"#{token}"
        after = self._tokenizer.decode([*context, token], skip_special_tokens=False)
        if after.startswith(before):
            return after[len(before) :]
        return self._tokenizer.decode([token], skip_special_tokens=False)  # the context's text changed: decode alone


@functools.lru_cache(maxsize=8)
def load_decoder(name: str) -> TokenDecoder | None:
    """The decoder for an episode's ``tokenizer`` (a directory with ``tokenizer.json``, or that file), if it is here."""
    if not name:
        return None
    path = Path(name).expanduser()
    if path.is_dir():
        path = path / "tokenizer.json"
    if not path.is_file():
        return None
    try:
        return TokenDecoder(Tokenizer.from_file(str(path)))
    except Exception as exc:  # a file we cannot read as a tokenizer leaves the viewer showing ids
        logger.warning("Cannot read the tokenizer %s (%s); showing token ids", path, exc)
        return None


@dataclasses.dataclass(frozen=True)
class TokenView:
    """One token the policy wrote, as the episode page shows it."""

    id: int
    text: str
    student: float | None  # the student's log-prob of the token
    teacher: float | None  # the teacher's log-prob; with outside_topk, log(tail mass), an upper bound
    divergence: float | None  # student - teacher, nats
    bin: int | None  # colour bin, 0..len(DIVERGENCE_BINS), from DIVERGENCE_BINS
    outside_topk: bool
    alternatives: tuple[tuple[str, float | None], ...]  # the teacher's most likely tokens and their log-probs


def token_views(step: Step, annotation: TokenLogprobs | None, decoder: TokenDecoder | None) -> list[TokenView]:
    """Every policy token of ``step``, with the teacher's view of it where ``annotation`` is given."""
    positions = np.flatnonzero(step.policy_mask).tolist()
    ids = step.token_ids.tolist()
    student = step.logprobs[positions]
    alternatives = [[] for _ in positions] if annotation is None else annotation.token_ids[:, :ALTERNATIVES].tolist()

    def texts(position: int, tokens: list[int]) -> list[str]:
        if decoder is None:
            return [f"#{t}" for t in tokens]
        return decoder.texts(ids[max(0, position - _CONTEXT) : position], tokens)

    texts_by_token = [texts(p, [ids[p], *alternatives[i]]) for i, p in enumerate(positions)]
    if annotation is None:
        return [TokenView(ids[p], texts_by_token[i][0], _number(student[i]), None, None, None, False, ()) for i, p in enumerate(positions)]
    teacher, in_topk = sampled_teacher_logprobs(step, annotation)
    divergence = student.astype(np.float64) - teacher
    bins = np.digitize(divergence, DIVERGENCE_BINS)
    views = []
    for i, p in enumerate(positions):
        shown = tuple(zip(texts_by_token[i][1:], (_number(lp) for lp in annotation.logprobs[i, :ALTERNATIVES]), strict=True))
        d = _number(divergence[i])
        bin_ = None if d is None else int(bins[i])
        views.append(
            TokenView(ids[p], texts_by_token[i][0], _number(student[i]), _number(teacher[i]), d, bin_, not bool(in_topk[i]), shown)
        )
    return views


def _number(value: float) -> float | None:
    """A finite value rounded for display, or None (JSON has no NaN)."""
    value = float(value)
    return round(value, 3) if math.isfinite(value) else None
