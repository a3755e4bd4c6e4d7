"""The scoring contract: what a teacher returns for the tokens of a sequence, wherever it runs.

A ``ScoreRequest`` names a token sequence, the first position to score, ``k``
and, optionally, candidate token ids per scored position. Its ``ScoreResult``
holds, for every position ``t >= start``, the teacher's distribution for token
``t`` given the tokens before it, as distillation needs it:

- ``token_logprobs``: the log-prob of the token that is there;
- ``topk_ids`` / ``topk_logprobs``: the k most likely tokens;
- ``tail_mass``: the probability outside the top k, exact (computed from the
  full distribution where the backend has it, opd's own server and the
  in-process scorer; from the returned top-k otherwise);
- ``candidate_logprobs``: the log-probs of the caller's candidates (e.g. the
  student's own top-k: the teacher on the student's support, for reverse KL).

``LocalScorer`` is the in-process backend (a transformers model);
``opd.agents.http_scoring.HTTPScorer`` reaches opd's ``/score``, vLLM and SGLang.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np
import torch
from transformers import PreTrainedModel

from opd.errors import ConfigError

__all__ = ["LocalScorer", "ScoreRequest", "ScoreResult", "Scorer", "score_distribution"]


@dataclasses.dataclass(frozen=True)
class ScoreRequest:
    token_ids: tuple[int, ...]  # the whole sequence
    start: int  # first position scored (>= 1: position 0 has nothing before it)
    k: int  # top-k returned per position
    candidates: tuple[tuple[int, ...], ...] | None = None  # per scored position, token ids whose log-probs to return

    def __post_init__(self) -> None:
        if not 1 <= self.start <= len(self.token_ids):
            raise ConfigError(
                f"start must lie in [1, {len(self.token_ids)}] for a sequence of {len(self.token_ids)} tokens, got {self.start}."
            )
        if self.k < 1:
            raise ConfigError(f"k must be at least 1, got {self.k}.")
        if self.candidates is not None and len(self.candidates) != self.positions:
            raise ConfigError(f"candidates must hold one list per scored position ({self.positions}), got {len(self.candidates)}.")

    @property
    def positions(self) -> int:
        return len(self.token_ids) - self.start


@dataclasses.dataclass(frozen=True)
class ScoreResult:
    token_logprobs: np.ndarray  # (N,) float32, N = positions scored
    topk_ids: np.ndarray  # (N, k) int32
    topk_logprobs: np.ndarray  # (N, k) float32
    tail_mass: np.ndarray  # (N,) float32: probability outside the top k
    candidate_logprobs: np.ndarray | None = None  # (N, C) float32, C = candidates per position (ragged lists are padded with -inf)

    def to_json(self) -> dict[str, list]:
        out = {name: getattr(self, name).tolist() for name in ("token_logprobs", "topk_ids", "topk_logprobs", "tail_mass")}
        if self.candidate_logprobs is not None:
            out["candidate_logprobs"] = [[None if not np.isfinite(v) else v for v in row] for row in self.candidate_logprobs.tolist()]
        return out

    @classmethod
    def from_json(cls, data: dict[str, list]) -> ScoreResult:
        candidates = data.get("candidate_logprobs")
        return cls(
            token_logprobs=np.asarray(data["token_logprobs"], np.float32),
            topk_ids=np.asarray(data["topk_ids"], np.int32).reshape(len(data["token_logprobs"]), -1),
            topk_logprobs=np.asarray(data["topk_logprobs"], np.float32).reshape(len(data["token_logprobs"]), -1),
            tail_mass=np.asarray(data["tail_mass"], np.float32),
            candidate_logprobs=None if candidates is None else pad_rows([[-np.inf if v is None else v for v in row] for row in candidates]),
        )


@runtime_checkable
class Scorer(Protocol):
    """Scores sequences: one ``ScoreResult`` per request, in order."""

    def score(self, requests: Sequence[ScoreRequest]) -> list[ScoreResult]: ...


def score_distribution(logprobs_NV: torch.Tensor, request: ScoreRequest) -> ScoreResult:
    """The contract's answer from full log-probs: row ``i`` is the distribution for token ``request.start + i``."""
    k = min(request.k, logprobs_NV.shape[-1])
    targets = torch.tensor(request.token_ids[request.start :], dtype=torch.long, device=logprobs_NV.device)
    top_values, top_ids = logprobs_NV.topk(k, dim=-1)
    # Exact: the mass of every token outside the top k, summed in float64 rather than 1 - sum(top k).
    outside = logprobs_NV.double().scatter(1, top_ids, float("-inf"))
    tail = outside.logsumexp(dim=-1).exp() if k < logprobs_NV.shape[-1] else torch.zeros(len(targets), dtype=torch.float64)
    candidates = None
    if request.candidates is not None:
        ids = torch.as_tensor(pad_rows(request.candidates, fill=0).astype(np.int64), device=logprobs_NV.device).reshape(len(targets), -1)
        values = logprobs_NV.gather(1, ids).cpu().numpy()
        width = np.asarray([len(c) for c in request.candidates])
        candidates = np.where(np.arange(values.shape[1])[None, :] < width[:, None], values, -np.inf).astype(np.float32)
    return ScoreResult(
        token_logprobs=logprobs_NV.gather(1, targets[:, None]).squeeze(1).cpu().numpy().astype(np.float32),
        topk_ids=top_ids.cpu().numpy().astype(np.int32),
        topk_logprobs=top_values.cpu().numpy().astype(np.float32),
        tail_mass=tail.cpu().numpy().astype(np.float32),
        candidate_logprobs=candidates,
    )


class LocalScorer:
    """The contract served by a transformers model in this process: one forward pass per group of sequences."""

    def __init__(self, model: PreTrainedModel, *, batch_tokens: int = 16_384, pad_id: int = 0) -> None:
        self.model = model.eval()
        self.batch_tokens = batch_tokens  # padded tokens per forward pass
        self.pad_id = pad_id

    @torch.no_grad()
    def score(self, requests: Sequence[ScoreRequest]) -> list[ScoreResult]:
        results: list[ScoreResult] = []
        for group in _groups(requests, self.batch_tokens):
            length = max(len(r.token_ids) for r in group)
            ids = torch.full((len(group), length), self.pad_id, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for row, request in enumerate(group):
                ids[row, : len(request.token_ids)] = torch.tensor(request.token_ids)
                mask[row, : len(request.token_ids)] = 1
            device = next(self.model.parameters()).device
            logits_BTV = self.model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
            for row, request in enumerate(group):
                # The logits at t-1 predict token t.
                rows_NV = torch.log_softmax(logits_BTV[row, request.start - 1 : len(request.token_ids) - 1].float(), dim=-1)
                results.append(score_distribution(rows_NV, request))
        return results


def _groups(requests: Sequence[ScoreRequest], batch_tokens: int) -> list[list[ScoreRequest]]:
    """Consecutive requests packed so that each forward pass holds about ``batch_tokens`` padded tokens."""
    groups: list[list[ScoreRequest]] = []
    for request in requests:
        group = groups[-1] if groups else []
        if group and max(len(r.token_ids) for r in [*group, request]) * (len(group) + 1) <= batch_tokens:
            group.append(request)
        else:
            groups.append([request])
    return groups


def pad_rows(rows: Sequence[Sequence[float]], fill: float = -np.inf) -> np.ndarray:
    """Ragged rows as one (N, max length) float32 array, padded with ``fill``."""
    width = max((len(r) for r in rows), default=0)
    out = np.full((len(rows), width), fill, np.float32)
    for i, row in enumerate(rows):
        out[i, : len(row)] = row
    return out
