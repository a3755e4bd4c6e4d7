"""Teachers given as top-k log-probabilities plus tail mass, and the coarsening that compares them.

Storing or sending a teacher's full distribution costs V floats per token
(V = 151,936 for Qwen); API teachers only return the top few log-probs anyway.
``TopKLogprobs`` keeps the k most likely tokens and the probability left outside
them. Divergences are then computed on the **K+1-outcome coarsening**: the K
teacher tokens plus one "tail" bucket that holds each distribution's remaining
mass. By the data-processing inequality this *lower-bounds* the exact
f-divergence (merging outcomes can only lose information) and is exact when
K = V (or when both distributions agree on how the tail is spread). It is an
approximation: the gradient inside the student's tail only sees the tail's
total, not its shape.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from opd.agents.topk_scoring import NEG_INF, safe_logsumexp, tail_logprob
from opd.errors import ConfigError

__all__ = ["TopKLogprobs", "coarsen_student", "safe_logsumexp", "tail_logprob", "topk_from_logits"]


@dataclass(frozen=True)
class TopKLogprobs:
    """A teacher's top-k log-probabilities per token.

    Attributes:
        token_ids: (B, T, K) int64, the K tokens, distinct within a position.
        logprobs: (B, T, K) float, natural-log probabilities normalised over the *full*
            vocabulary (not over the K tokens).
        tail_mass: (B, T) float, the teacher's probability outside the K tokens, computed as
            ``exp(tail_logprob(...))`` from the logits (exactly 0 when K = V), not as ``1 - sum(exp(logprobs))``.

    Any leading shape works; (B, T) is what the losses pass.
    """

    token_ids: Tensor
    logprobs: Tensor
    tail_mass: Tensor

    def __post_init__(self) -> None:
        if self.token_ids.shape != self.logprobs.shape:
            raise ConfigError(
                f"TopKLogprobs: token_ids {tuple(self.token_ids.shape)} and logprobs {tuple(self.logprobs.shape)} "
                "must have the same (B, T, K) shape."
            )
        if self.tail_mass.shape != self.logprobs.shape[:-1]:
            raise ConfigError(
                f"TopKLogprobs: tail_mass {tuple(self.tail_mass.shape)} must be logprobs' shape without K, "
                f"{tuple(self.logprobs.shape[:-1])}."
            )
        if self.token_ids.dtype != torch.int64:
            raise ConfigError(f"TopKLogprobs: token_ids must be int64, got {self.token_ids.dtype}.")

    @property
    def k(self) -> int:
        return self.token_ids.shape[-1]

    def rows(self, index_N: Tensor) -> TopKLogprobs:
        """The positions ``index_N`` of the flattened leading dims, as (N, K) / (N,) tensors."""
        k = self.k
        return TopKLogprobs(
            token_ids=self.token_ids.reshape(-1, k).index_select(0, index_N),
            logprobs=self.logprobs.reshape(-1, k).index_select(0, index_N),
            tail_mass=self.tail_mass.reshape(-1).index_select(0, index_N),
        )

    def coarse_logprobs(self) -> Tensor:
        """(..., K + 1): the K log-probs and log(tail_mass) as the last outcome."""
        log_tail = torch.log(self.tail_mass.clamp_min(0).to(self.logprobs.dtype))
        return torch.cat([self.logprobs, log_tail.unsqueeze(-1)], dim=-1)


def coarsen_student(logits_NV: Tensor, token_ids_NK: Tensor, *, normalized: bool = False) -> Tensor:
    """(N, K + 1): the student's log-probs of the teacher's K tokens, then of everything else.

    ``normalized``: ``logits_NV`` are already log-probs, so neither log-softmax nor the tail's
    normaliser is computed again (two passes over (N, V) saved, forward and backward).
    """
    if normalized:
        tail_N = safe_logsumexp(logits_NV.scatter(-1, token_ids_NK, NEG_INF))
        return torch.cat([logits_NV.gather(-1, token_ids_NK), tail_N.unsqueeze(-1)], dim=-1)
    logprobs_NV = torch.log_softmax(logits_NV, dim=-1)
    return torch.cat([logprobs_NV.gather(-1, token_ids_NK), tail_logprob(logits_NV, token_ids_NK).unsqueeze(-1)], dim=-1)


def topk_from_logits(logits_BTV: Tensor, k: int) -> TopKLogprobs:
    """The top-k representation of full teacher logits (B, T, V) (any leading shape).

    Computed without gradient: the teacher is a fixed target.
    """
    vocab = logits_BTV.shape[-1]
    if not 1 <= k <= vocab:
        raise ConfigError(f"top-k: k must be between 1 and the vocabulary size {vocab}, got {k}.")
    with torch.no_grad():
        logprobs_BTV = torch.log_softmax(logits_BTV, dim=-1)
        logprobs_BTK, token_ids_BTK = logprobs_BTV.topk(k, dim=-1)
        log_tail_BT = tail_logprob(logits_BTV, token_ids_BTK)
    return TopKLogprobs(token_ids=token_ids_BTK, logprobs=logprobs_BTK, tail_mass=log_tail_BT.exp())
