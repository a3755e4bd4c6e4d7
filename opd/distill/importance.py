"""Importance weights for training on episodes a different (older) policy sampled.

A stored episode was sampled by the policy as it was then (mu); training on it
now (pi) estimates expectations under the wrong distribution. Each policy
token's term is multiplied by the ratio ``pi(x_t) / mu(x_t)`` of the current
and the recorded log-probs of the sampled token, truncated at ``clip`` (as in
truncated importance sampling / V-trace: an unbounded ratio makes the variance
explode once the policies drift apart). The weights are detached: they scale
the gradient, they are not differentiated.

What this does not do: the exact correction for the *prefix* a token was
sampled after is the product of the ratios of every earlier token, whose
variance grows with the episode's length; the per-token ratio is the usual
approximation (PPO, GRPO). Tokens without a recorded log-prob (a scripted
expert's, or a teacher's when it played) get weight 1: no correction exists.
With staleness 0 (pi is mu) every weight is 1 up to rounding.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["importance_weights"]


def importance_weights(current_BT: Tensor, recorded_BT: Tensor, policy_BT: Tensor, clip: float) -> Tensor:
    """(B, T) detached ``min(exp(current - recorded), clip)`` on policy tokens with a recorded log-prob; 1 elsewhere.

    Args:
        current_BT: (B, T) the current policy's log-prob of each target.
        recorded_BT: (B, T) the sampling policy's recorded log-prob (NaN where unknown).
        policy_BT: (B, T) bool, the targets the policy wrote.
        clip: the largest weight.
    """
    known_BT = policy_BT & torch.isfinite(recorded_BT)
    log_ratio_BT = torch.where(known_BT, current_BT.detach() - torch.nan_to_num(recorded_BT), 0.0)
    return torch.exp(log_ratio_BT).clamp(max=clip)
