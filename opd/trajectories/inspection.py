"""Summaries of stored episodes for people: how far the student was from each teacher, step by step."""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from opd.trajectories.records import Step, TokenLogprobs

__all__ = ["StepDivergence", "sampled_teacher_logprobs", "step_divergence"]


@dataclasses.dataclass(frozen=True)
class StepDivergence:
    step_index: int
    teacher: str
    tokens: int  # policy tokens in the step
    reverse_kl_estimate: float  # nats/token; NaN without tokens
    top1_agreement: float  # fraction of sampled tokens that are the teacher's most likely token
    outside_topk: int  # sampled tokens the teacher's top k does not contain


def step_divergence(step: Step, annotation: TokenLogprobs) -> StepDivergence:
    """The mean of log q(x) - log p(x) over the tokens x the policy sampled in ``step``.

    That is the single-sample estimate of the reverse KL from student q to
    teacher p. Where a sampled token is outside the teacher's top k, log p(x)
    is bounded above by log(tail mass), so the estimate is then a lower bound.
    """
    sampled = step.token_ids[step.policy_mask]
    if len(sampled) == 0:
        return StepDivergence(step.index, annotation.teacher, 0, math.nan, math.nan, 0)
    student = step.logprobs[step.policy_mask].astype(np.float64)
    teacher, in_topk = sampled_teacher_logprobs(step, annotation)
    return StepDivergence(
        step_index=step.index,
        teacher=annotation.teacher,
        tokens=len(sampled),
        reverse_kl_estimate=float(np.mean(student - teacher)),
        top1_agreement=float(np.mean(annotation.token_ids[:, 0] == sampled)),
        outside_topk=int((~in_topk).sum()),
    )


def sampled_teacher_logprobs(step: Step, annotation: TokenLogprobs) -> tuple[np.ndarray, np.ndarray]:
    """The teacher's log p(x) for each token x the policy sampled in ``step``, and whether x was in its top k.

    Returns ``(logprobs_P, in_topk_P)``, float64 and bool, P = policy tokens. Outside the top k,
    log p(x) is not known; log(tail mass) stands in for it, an upper bound.
    """
    sampled = step.token_ids[step.policy_mask]
    hits = annotation.token_ids == sampled[:, None]  # (P, K)
    in_topk = hits.any(axis=1)
    from_topk = np.where(hits, annotation.logprobs.astype(np.float64), 0.0).sum(axis=1)
    return np.where(in_topk, from_topk, np.log(np.maximum(annotation.tail_mass.astype(np.float64), 1e-30))), in_topk
