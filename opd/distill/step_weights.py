"""Per-step weights for the token-level loss: which steps of an episode the divergence dwells on.

Multi-turn distillation papers report large gains from not treating every step
alike (SOD reweights steps by how far the student is from the teacher there). Two
weightings, each normalised to mean 1 over the batch's steps and clipped at
``max_weight``, so they redistribute the loss rather than rescale it:

* ``by: divergence``: a step weighs its estimated reverse KL from the teacher, the
  mean over its tokens of the non-negative estimator ``r - 1 - log r`` with
  ``r = p_teacher(token) / q_student(token)`` (Schulman's k3), from the stored
  sampled log-probs, so the weights need no extra forward pass. Steps where the
  student already agrees with the teacher fade; steps where it goes astray count.
* ``by: position``: step ``s`` (0-based) weighs ``position_decay ** s``: above 1 the
  later steps of an episode weigh more (they are rarer in the data and where
  compounding errors show), below 1 the earlier ones.

Under data parallelism the mean is taken over each rank's shard.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import torch
from torch import Tensor

from opd.distill.batch import EpisodeBatch
from opd.errors import ConfigError

__all__ = ["StepWeights", "step_weights_BT"]


@dataclasses.dataclass(frozen=True)
class StepWeights:
    by: Literal["none", "divergence", "position"] = "none"  # what a step's weight follows
    position_decay: float = 1.5  # by: position: step s weighs position_decay ** s before normalising
    max_weight: float = 5.0  # no step weighs more than this many times the mean step

    def __post_init__(self) -> None:
        if self.by not in ("none", "divergence", "position"):
            raise ConfigError(f"step_weights.by must be none, divergence or position; got {self.by!r}.")
        if self.position_decay <= 0 or self.max_weight < 1:
            raise ConfigError(
                f"step_weights: position_decay must be positive and max_weight at least 1; got {self.position_decay}, {self.max_weight}."
            )


def step_weights_BT(batch: EpisodeBatch, config: StepWeights) -> Tensor:
    """(B, T) each target's weight, that of its step; 1 everywhere for ``by: none``."""
    policy_BT = batch.policy_BT
    if config.by == "none":
        return torch.ones_like(policy_BT, dtype=torch.float32)
    B, S = policy_BT.shape[0], int(batch.steps_B.max())
    step_BT = batch.step_BT.clamp_min(0)
    if config.by == "position":
        value_BS = config.position_decay ** torch.arange(S, dtype=torch.float32, device=policy_BT.device).expand(B, S)
    else:
        value_BS = _step_divergence(batch, B, S)
    tokens_BS = torch.zeros(B, S, device=policy_BT.device).scatter_add(1, step_BT, policy_BT.float())
    present_BS = tokens_BS > 0
    mean = value_BS[present_BS].mean() if bool(present_BS.any()) else torch.tensor(0.0)
    if not bool(mean > 0):  # the student agrees with the teacher everywhere: nothing to redistribute
        return torch.ones_like(policy_BT, dtype=torch.float32)
    weight_BS = (value_BS / mean).clamp(max=config.max_weight)
    return weight_BS.gather(1, step_BT)


def _step_divergence(batch: EpisodeBatch, B: int, S: int) -> Tensor:
    """(B, S) the mean over each step's policy tokens of k3 = r - 1 - log r, r = p_teacher / q_student on the sampled token."""
    if batch.teacher_sampled_BT is None:
        raise ConfigError("step_weights.by: divergence needs teacher token annotations; configure a teacher.")
    policy_BT = batch.policy_BT
    log_ratio_BT = torch.where(policy_BT, batch.teacher_sampled_BT - batch.sampled_logprobs_BT, 0.0).clamp(-20.0, 20.0)
    k3_BT = torch.where(policy_BT, log_ratio_BT.exp() - 1 - log_ratio_BT, 0.0)
    step_BT = batch.step_BT.clamp_min(0)
    sums_BS = torch.zeros(B, S, device=k3_BT.device).scatter_add(1, step_BT, k3_BT.float())
    tokens_BS = torch.zeros(B, S, device=k3_BT.device).scatter_add(1, step_BT, policy_BT.float())
    return sums_BS / tokens_BS.clamp_min(1.0)
