"""The single-sample reverse-KL estimator on the tokens the student actually sampled.

The exact reverse KL needs the teacher's whole distribution at every position.
On-policy, the student's own samples already come from q, so
``log q(x_t) - log p(x_t)`` at the sampled token x_t is an unbiased estimate of
KL(q || p) at that position and needs only *one* teacher log-prob per token:
what a black-box teacher with logprobs, or a teacher too large to ship logits
from, can give. It is noisy (one sample) and is meant for policy-gradient style
losses: use the *negated, detached* value as a per-token reward or advantage.
Differentiating it directly is not a reverse-KL gradient: ``E_q[grad log q] = 0``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from opd.errors import ConfigError


def sampled_reverse_kl(student_logprobs_BT: Tensor, teacher_logprobs_BT: Tensor, mask_BT: Tensor | None = None) -> Tensor:
    """Per-token estimate ``log q(x_t) - log p(x_t)`` (B, T) of KL(q || p) at the sampled tokens x_t.

    Args:
        student_logprobs_BT: (B, T) the student's log-prob of the token it sampled (e.g. as
            recorded at generation, or ``token_logprobs`` of the current student).
        teacher_logprobs_BT: (B, T) the teacher's log-prob of the same token.
        mask_BT: (B, T) bool, True at the student's own tokens; other positions are 0.

    The expectation under x_t ~ q is the exact reverse KL at that position.
    """
    if student_logprobs_BT.shape != teacher_logprobs_BT.shape:
        raise ConfigError(
            f"sampled_reverse_kl: student {tuple(student_logprobs_BT.shape)} and teacher "
            f"{tuple(teacher_logprobs_BT.shape)} log-probs must have the same (B, T) shape."
        )
    estimate_BT = student_logprobs_BT - teacher_logprobs_BT
    if mask_BT is None:
        return estimate_BT
    return torch.where(mask_BT, estimate_BT, torch.zeros_like(estimate_BT))


def token_logprobs(logits_BTV: Tensor, token_ids_BT: Tensor) -> Tensor:
    """(B, T) ``log softmax(logits)[token]``: the log-prob a model gives the tokens that were sampled.

    One gather and one logsumexp; no (B, T, V) log-softmax is kept for backward.
    """
    picked_BT = logits_BTV.gather(-1, token_ids_BT.unsqueeze(-1)).squeeze(-1)
    return picked_BT - torch.logsumexp(logits_BTV, dim=-1)
