"""``ScoringTeacher``: a white-box teacher behind the scoring contract, wherever the model runs.

It turns episodes into ``ScoreRequest`` s (one per episode: the whole token
sequence, scored from the first policy token) and the answers into the
``TokenLogprobs`` the store keeps, exactly as the in-process ``WhiteBoxTeacher``
does. With ``support="student"`` the stored ids are the *student's* top-k at each
policy token and the log-probs the teacher's for those ids, with the teacher's
exact mass outside them as the tail: the K+1 coarsening the losses compute then
lies over the student's support, which is what reverse KL weighs
(``opd.distill.topk``). This needs a backend that scores candidate ids (opd's
``/score``, SGLang, in-process); vLLM's prompt log-probs only give the top-k.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from transformers import PreTrainedModel

from opd.agents.scoring import Scorer, ScoreRequest, ScoreResult
from opd.errors import ConfigError
from opd.trajectories import Annotations, Episode, TokenLogprobs

__all__ = ["ScoringTeacher", "student_topk"]

Support = Literal["teacher", "student"]


class ScoringTeacher:
    """Implements ``Teacher`` over any ``Scorer``: in-process, opd's server, vLLM or SGLang."""

    def __init__(
        self, scorer: Scorer, *, name: str, k: int = 64, support: Support = "teacher", student: PreTrainedModel | None = None
    ) -> None:
        if support == "student" and student is None:
            raise ConfigError("support='student' scores the student's own top-k, so the student model is needed; pass student=.")
        self.scorer = scorer
        self.name = name
        self.k = k
        self.support = support
        self.student = student

    def annotate(self, episodes: Sequence[Episode]) -> list[Annotations]:
        requests = [self._request(e) for e in episodes]
        scored = iter(self.scorer.score([r for r in requests if r is not None]))
        return [
            Annotations(token_logprobs=tuple(self._per_step(e, r, next(scored) if r else None)))
            for e, r in zip(episodes, requests, strict=True)
        ]

    def _request(self, episode: Episode) -> ScoreRequest | None:
        mask = episode.policy_mask
        if not mask.any():
            return None
        start = int(np.flatnonzero(mask)[0])
        if start == 0:
            raise ConfigError(f"Episode {episode.id}: the first token is the policy's, so nothing conditions it; add a prompt.")
        ids = tuple(int(t) for t in episode.token_ids)
        candidates = None
        if self.support == "student":
            assert self.student is not None
            topk = student_topk(self.student, episode.token_ids, start, self.k)
            candidates = tuple(tuple(row) for row in topk.tolist())
        return ScoreRequest(ids, start, self.k, candidates)

    def _per_step(self, episode: Episode, request: ScoreRequest | None, result: ScoreResult | None) -> list[TokenLogprobs]:
        out, offset = [], 0
        first = request.start if request is not None else 0
        for step in episode.steps:
            rows = offset + np.flatnonzero(step.policy_mask) - first  # rows of the result: position - start
            offset += len(step.token_ids)
            if request is None or result is None or rows.size == 0:
                ids, logprobs, tail = np.zeros((0, self.k), np.int32), np.zeros((0, self.k), np.float16), np.zeros(0, np.float32)
            elif self.support == "student":
                assert result.candidate_logprobs is not None, "the scorer dropped the candidates"
                assert request.candidates is not None
                ids = np.asarray([request.candidates[i] for i in rows], np.int32)
                logprobs = result.candidate_logprobs[rows]
                tail = np.clip(1.0 - np.exp(logprobs.astype(np.float64)).sum(axis=1), 0.0, 1.0)
            else:
                ids, logprobs, tail = result.topk_ids[rows], result.topk_logprobs[rows], result.tail_mass[rows]
            out.append(
                TokenLogprobs(
                    teacher=self.name,
                    step_index=step.index,
                    token_ids=np.asarray(ids, np.int32),
                    logprobs=np.asarray(logprobs, np.float16),
                    tail_mass=np.asarray(tail, np.float32),
                )
            )
        return out


@torch.no_grad()
def student_topk(student: PreTrainedModel, token_ids: np.ndarray, start: int, k: int) -> np.ndarray:
    """(N, k) ids of the student's k most likely tokens at positions ``start..`` of ``token_ids``."""
    device = next(student.parameters()).device
    ids = torch.as_tensor(token_ids.astype(np.int64), device=device)[None]
    was_training = student.training
    student.eval()
    try:
        logits_TV = student(input_ids=ids).logits[0, start - 1 : len(token_ids) - 1]
    finally:
        student.train(was_training)
    return logits_TV.topk(min(k, logits_TV.shape[-1]), dim=-1).indices.cpu().numpy()
