"""Naive reference divergences, written plainly from probabilities for the tests.

Independent of opd.distill on purpose: no log-space tricks, no shared helpers,
each formula as a paper writes it, on softmax probabilities in float64. They
need strictly positive probabilities (random finite logits give them).
"""

from __future__ import annotations

import torch
from torch import Tensor


def probs(logits: Tensor) -> Tensor:
    return torch.softmax(logits.double(), dim=-1)


def kl(a: Tensor, b: Tensor) -> Tensor:
    """KL(a || b) over the last dim."""
    return (a * torch.log(a / b)).sum(-1)


def naive(name: str, p: Tensor, q: Tensor, **params: float) -> Tensor:
    """D(p_teacher || q_student) from probabilities (..., V) -> (...)."""
    if name == "forward_kl":
        return kl(p, q)
    if name == "reverse_kl":
        return kl(q, p)
    if name == "jsd":
        beta = params.get("beta", 0.5)
        m = beta * p + (1 - beta) * q
        return beta * kl(p, m) + (1 - beta) * kl(q, m)
    if name == "tv":
        return 0.5 * (p - q).abs().sum(-1)
    if name == "alpha":
        alpha = params.get("alpha", 0.0)
        return 4 / (1 - alpha**2) * (1 - (p ** ((1 - alpha) / 2) * q ** ((1 + alpha) / 2)).sum(-1))
    if name == "skew_kl":
        skew = params.get("skew", 0.1)
        return kl(p, skew * p + (1 - skew) * q)
    if name == "skew_reverse_kl":
        skew = params.get("skew", 0.1)
        return kl(q, skew * q + (1 - skew) * p)
    raise KeyError(name)


def naive_from_logits(name: str, student_logits: Tensor, teacher_logits: Tensor, **params: float) -> Tensor:
    return naive(name, probs(teacher_logits), probs(student_logits), **params)


def naive_coarse(student_logits: Tensor, teacher_logits: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """(p, q) on the teacher's top-k tokens + one tail outcome, from probabilities by a plain gather."""
    p_full, q_full = probs(teacher_logits), probs(student_logits)
    ids = p_full.topk(k, dim=-1).indices
    p_top, q_top = p_full.gather(-1, ids), q_full.gather(-1, ids)
    p = torch.cat([p_top, 1 - p_top.sum(-1, keepdim=True)], dim=-1)
    q = torch.cat([q_top, 1 - q_top.sum(-1, keepdim=True)], dim=-1)
    return p, q


def naive_loop(name: str, p_row: list[float], q_row: list[float], **params: float) -> float:
    """The same, one position, as an explicit Python loop over the vocabulary (for the KLs and JSD)."""
    import math

    total = 0.0
    for p, q in zip(p_row, q_row, strict=True):
        if name == "forward_kl":
            total += p * math.log(p / q)
        elif name == "reverse_kl":
            total += q * math.log(q / p)
        elif name == "jsd":
            beta = params.get("beta", 0.5)
            m = beta * p + (1 - beta) * q
            total += beta * p * math.log(p / m) + (1 - beta) * q * math.log(q / m)
        else:
            raise KeyError(name)
    return total


# Parameter settings every test sweeps: (registry name, params).
CASES: list[tuple[str, dict[str, float]]] = [
    ("forward_kl", {}),
    ("reverse_kl", {}),
    ("jsd", {"beta": 0.5}),
    ("jsd", {"beta": 0.1}),
    ("jsd", {"beta": 0.9}),
    ("tv", {}),
    ("alpha", {"alpha": 0.0}),
    ("alpha", {"alpha": 0.5}),
    ("alpha", {"alpha": -0.5}),
    ("alpha", {"alpha": 2.0}),
    ("skew_kl", {"skew": 0.1}),
    ("skew_reverse_kl", {"skew": 0.3}),
]


def case_id(case: tuple[str, dict[str, float]]) -> str:
    name, params = case
    return name + "".join(f"-{k}={v}" for k, v in params.items())
