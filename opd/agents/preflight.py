"""Before training: can the teacher score the student's tokens as they are?

A white-box teacher scores the student's token ids directly, so both must mean
the same thing by each id. Different vocabularies, special tokens or chat
templates make the teacher score text the student never wrote, which biases
every token-level signal. :func:`preflight` lists each mismatch and, given the
teacher model, estimates that bias in nats per token: how much more surprised
the teacher is by the student's tokenisation of some texts than by its own.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = ["PreflightReport", "preflight"]

_SPECIAL = ("bos_token", "eos_token", "pad_token", "unk_token")


@dataclasses.dataclass(frozen=True)
class PreflightReport:
    mismatches: tuple[str, ...]
    bias_nats_per_token: float | None  # None: not estimated (no teacher model or no texts)

    @property
    def ok(self) -> bool:
        return not self.mismatches

    def summary(self) -> str:
        """One line: whether the teacher can score the student's tokens, and the bias if it cannot."""
        if self.ok:
            return "student and teacher tokenizers, special tokens and chat templates match"
        vocabularies = next((m for m in self.mismatches if m.startswith("vocabularies differ")), None)
        verdict = f"incompatible: {vocabularies}" if vocabularies else f"mismatched: {self.mismatches[0]}"
        bias = (
            ""
            if self.bias_nats_per_token is None
            else f"; teacher scores on student tokens biased by {self.bias_nats_per_token:.3f} nats/token"
        )
        return f"student and teacher are {verdict}{bias}; use a teacher with the student's tokenizer and chat template"

    def describe(self) -> str:
        if self.ok:
            return self.summary()
        return self.summary() + "\n" + "\n".join(f"- {m}" for m in self.mismatches)


def preflight(
    student: PreTrainedTokenizerBase,
    teacher: PreTrainedTokenizerBase,
    *,
    teacher_model: PreTrainedModel | None = None,
    texts: Sequence[str] = (),
) -> PreflightReport:
    mismatches = []
    student_vocab, teacher_vocab = student.get_vocab(), teacher.get_vocab()
    if student_vocab != teacher_vocab:
        differ = sum(teacher_vocab.get(token) != index for token, index in student_vocab.items())
        mismatches.append(
            f"vocabularies differ: {differ} of {len(student_vocab)} student tokens map to another id (or none) in the teacher"
        )
    for attribute in _SPECIAL:
        if getattr(student, attribute) != getattr(teacher, attribute):
            mismatches.append(f"{attribute}: student {getattr(student, attribute)!r}, teacher {getattr(teacher, attribute)!r}")
    if (student.chat_template or "") != (teacher.chat_template or ""):
        mismatches.append("chat templates differ: the teacher would have rendered the conversation differently")
    bias = None
    if mismatches and teacher_model is not None and texts:
        bias = _tokenisation_bias(student, teacher, teacher_model, texts)
    return PreflightReport(tuple(mismatches), bias)


@torch.no_grad()
def _tokenisation_bias(
    student: PreTrainedTokenizerBase, teacher: PreTrainedTokenizerBase, model: PreTrainedModel, texts: Sequence[str]
) -> float:
    """Mean over texts of the teacher's NLL per token on the student's ids minus on its own ids."""
    vocab = model.config.vocab_size
    gaps = []
    for text in texts:
        own = teacher(text, add_special_tokens=False).input_ids
        theirs = [i if i < vocab else teacher.unk_token_id or 0 for i in student(text, add_special_tokens=False).input_ids]
        if len(own) < 2 or len(theirs) < 2:
            continue
        gaps.append(_nll(model, theirs) / (len(theirs) - 1) - _nll(model, own) / (len(own) - 1))
    return float(sum(gaps) / len(gaps)) if gaps else math.nan


def _nll(model: PreTrainedModel, ids: list[int]) -> float:
    tensor = torch.tensor([ids], device=next(model.parameters()).device)
    logprobs = torch.log_softmax(model(input_ids=tensor).logits.float(), dim=-1)
    return float(-logprobs[0, :-1].gather(1, tensor[0, 1:, None]).sum())
