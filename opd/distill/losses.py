"""Losses at every granularity: token, step, episode, their hybrid, and SFT.

All take the student's logits on a stored batch (see ``batch.py``) and count
only the tokens the policy wrote; tool results and prompts never contribute.

* ``token``: the per-token divergence to the teacher, averaged over tokens.
* ``step``: the per-token divergence averaged within each step (one tool-call
  turn), then over steps, so a long step counts as much as a short one.
* ``episode``: sequence-level policy gradient, REINFORCE with the batch mean as
  baseline; the return is the negated sum of the per-token reverse-KL estimate
  on the sampled tokens (``episode_return="reverse_kl"``) or the env's outcome
  reward (``"outcome"``).
* ``hybrid``: a weighted sum of the above.
* ``sft``: cross-entropy on the policy tokens (for demonstrations).

Every mean divides by a :class:`LossTotals` (tokens, steps, episodes, the sum
of returns). By default those are the batch's own. Under data parallelism each
rank holds a shard of the global batch and divides by the *global* totals, so
the ranks' losses add up to the loss of the whole batch exactly; a per-rank mean
averaged over ranks would not be the global mean when the shards hold different
numbers of tokens (see opd/distill/distributed.py).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Literal

import torch
from torch import Tensor

from opd.distill.batch import EpisodeBatch
from opd.distill.divergences import get_divergence
from opd.distill.sampled import token_logprobs
from opd.distill.token_divergence import reduce_masked, token_divergence
from opd.errors import ConfigError

__all__ = ["LOSS_KINDS", "LossConfig", "LossResult", "LossTotals", "compute_loss", "loss_totals"]

LOSS_KINDS = ("token", "step", "episode", "hybrid", "sft")


@dataclasses.dataclass(frozen=True)
class LossConfig:
    kind: Literal["token", "step", "episode", "hybrid", "sft"] = "token"
    divergence: str = "reverse_kl"  # a name from opd.distill.divergence_names()
    divergence_params: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # e.g. {"beta": 0.5} for jsd
    episode_return: Literal["reverse_kl", "outcome"] = "reverse_kl"
    hybrid_weights: Mapping[str, float] = dataclasses.field(default_factory=lambda: {"token": 1.0, "episode": 0.1})

    def __post_init__(self) -> None:
        if self.kind not in LOSS_KINDS:
            raise ConfigError(f"loss kind must be one of {list(LOSS_KINDS)}, got {self.kind!r}.")
        if self.episode_return not in ("reverse_kl", "outcome"):
            raise ConfigError(f"episode_return must be 'reverse_kl' or 'outcome', got {self.episode_return!r}.")
        bad = set(self.hybrid_weights) - {"token", "step", "episode", "sft"}
        if self.kind == "hybrid" and (bad or not self.hybrid_weights):
            raise ConfigError(f"hybrid_weights must weigh some of token, step, episode, sft; got {dict(self.hybrid_weights)}.")
        get_divergence(self.divergence, **self.divergence_params)  # fail early on a bad name or parameter

    @property
    def needs_teacher(self) -> bool:
        parts = self.hybrid_weights if self.kind == "hybrid" else {self.kind: 1.0}
        return any(p in ("token", "step") or (p == "episode" and self.episode_return == "reverse_kl") for p in parts)


@dataclasses.dataclass(frozen=True)
class LossTotals:
    """What the loss terms' means divide by: a batch's own counts, or the sums over every rank's shard."""

    policy_tokens: float = 0.0  # tokens the policy wrote (token, episode and sft means)
    steps: float = 0.0  # (episode, step) pairs with at least one policy token (step mean)
    episodes: float = 0.0
    returns: float = 0.0  # sum of the episode returns; the episode loss's baseline is their mean


def loss_totals(batch: EpisodeBatch, config: LossConfig) -> LossTotals:
    """The totals of ``batch`` alone (sum them over ranks for a data-parallel step)."""
    parts = dict(config.hybrid_weights) if config.kind == "hybrid" else {config.kind: 1.0}
    return LossTotals(
        policy_tokens=float(batch.policy_tokens),
        steps=float(_step_sums(torch.zeros(batch.step_BT.shape, device=batch.step_BT.device), batch)[1].gt(0).sum()),
        episodes=float(len(batch.rewards_B)),
        returns=float(_returns(batch, config).sum()) if "episode" in parts else 0.0,
    )


@dataclasses.dataclass(frozen=True)
class LossResult:
    loss: Tensor  # scalar, differentiable
    metrics: dict[str, float]


def compute_loss(logits_BTV: Tensor, batch: EpisodeBatch, config: LossConfig, totals: LossTotals | None = None) -> LossResult:
    """The configured loss on ``batch``; ``logits_BTV`` are the student's logits on ``batch.input_ids_BT``.

    ``totals``: what the means divide by; default the batch's own (:func:`loss_totals`).
    """
    parts = dict(config.hybrid_weights) if config.kind == "hybrid" else {config.kind: 1.0}
    totals = loss_totals(batch, config) if totals is None else totals
    terms = {name: _TERMS[name](logits_BTV, batch, config, totals) for name in parts}
    loss = sum(weight * terms[name] for name, weight in parts.items())
    metrics = {f"loss/{name}": float(value.detach()) for name, value in terms.items()}
    metrics["loss"] = float(loss.detach())
    return LossResult(loss=loss, metrics=metrics)


def _per_token(logits_BTV: Tensor, batch: EpisodeBatch, config: LossConfig) -> Tensor:
    if batch.teacher is None:
        raise ConfigError(f"A {config.kind!r} loss needs teacher annotations; this batch has none.")
    divergence = get_divergence(config.divergence, **config.divergence_params)
    return token_divergence(logits_BTV, batch.teacher, divergence, mask_BT=batch.policy_BT)


def token_loss(logits_BTV: Tensor, batch: EpisodeBatch, config: LossConfig, totals: LossTotals) -> Tensor:
    return reduce_masked(_per_token(logits_BTV, batch, config), batch.policy_BT, "sum") / max(totals.policy_tokens, 1.0)


def step_loss(logits_BTV: Tensor, batch: EpisodeBatch, config: LossConfig, totals: LossTotals) -> Tensor:
    sums, counts = _step_sums(_per_token(logits_BTV, batch, config), batch)
    present = counts > 0
    return (sums[present] / counts[present]).sum() / max(totals.steps, 1.0)


def _step_sums(values_BT: Tensor, batch: EpisodeBatch) -> tuple[Tensor, Tensor]:
    """Per (episode, step): the sum of ``values_BT`` over its policy tokens, and how many there are."""
    steps = int(batch.steps_B.max())
    device = values_BT.device
    group_BT = torch.arange(len(batch.steps_B), device=device)[:, None] * steps + batch.step_BT.clamp_min(0)  # one id per (episode, step)
    mask = batch.policy_BT
    sums = torch.zeros(len(batch.steps_B) * steps, dtype=values_BT.dtype, device=device).index_add(0, group_BT[mask], values_BT[mask])
    counts = torch.zeros_like(sums).index_add(0, group_BT[mask], torch.ones_like(values_BT[mask]))
    return sums, counts


def _returns(batch: EpisodeBatch, config: LossConfig) -> Tensor:
    """(B,) each episode's return: the outcome reward, or minus the summed reverse-KL estimate on the sampled tokens."""
    if config.episode_return == "outcome":
        return batch.rewards_B
    if batch.teacher_sampled_BT is None:
        raise ConfigError("episode_return='reverse_kl' needs teacher annotations; use 'outcome' without a teacher.")
    mask = batch.policy_BT
    estimate_BT = torch.where(mask, batch.sampled_logprobs_BT - batch.teacher_sampled_BT, torch.zeros_like(batch.sampled_logprobs_BT))
    return -estimate_BT.sum(dim=-1)


def episode_loss(logits_BTV: Tensor, batch: EpisodeBatch, config: LossConfig, totals: LossTotals) -> Tensor:
    logq_BT = token_logprobs(logits_BTV, batch.targets_BT)
    mask = batch.policy_BT
    advantage_B = _returns(batch, config) - totals.returns / max(totals.episodes, 1.0)  # baseline: the mean return of the whole batch
    logq_sum_B = torch.where(mask, logq_BT, torch.zeros_like(logq_BT)).sum(dim=-1)
    return -(advantage_B.detach() * logq_sum_B).sum() / max(totals.policy_tokens, 1.0)


def sft_loss(logits_BTV: Tensor, batch: EpisodeBatch, config: LossConfig, totals: LossTotals) -> Tensor:
    return -reduce_masked(token_logprobs(logits_BTV, batch.targets_BT), batch.policy_BT, "sum") / max(totals.policy_tokens, 1.0)


_TERMS = {"token": token_loss, "step": step_loss, "episode": episode_loss, "sft": sft_loss}
