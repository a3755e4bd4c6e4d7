"""Losses at every granularity and for every feedback signal, and their hybrids.

All take the student's logits on a stored batch (see ``batch.py``) and count
only the tokens the policy wrote; tool results and prompts never contribute.

Logit feedback (a white-box teacher, or the student itself with privileged context):

* ``token``: the per-token divergence to the teacher, averaged over tokens.
* ``step``: the per-token divergence averaged within each step (one tool-call
  turn), then over steps, so a long step counts as much as a short one.
* ``episode``: sequence-level policy gradient whose return is the negated sum of
  the per-token reverse-KL estimate on the sampled tokens
  (``episode_return="reverse_kl"``), or the env's outcome reward (``"outcome"``,
  the same as ``episode_outcome``).

Outcome feedback (a critic's step scores, or the suite verifier's rewards); each
unit (a step or an episode) has a return R, the advantage is R minus the batch
mean, and ``objective`` picks how it is used: ``pg`` (policy gradient with that
baseline) or ``rwr`` (reward-weighted regression: the unit's log-likelihood
weighted by exp(advantage / rwr_temperature), normalised to mean 1):

* ``step_critique``: R = the critic's score of the step, scaled to [0, 1];
  unannotated steps drop out.
* ``step_outcome``: R = the env's reward from that step to the episode's end.
* ``episode_critique``: R = the mean critic score over the episode's scored steps.
* ``episode_outcome``: R = the env's episode reward.

``hybrid`` is a weighted sum of any of these; ``sft`` is cross-entropy on the
policy tokens (demonstrations, or self-imitation of verified successes).

Uncertainty (off by default): ``uncertainty="weight"`` scales each token's
divergence by 1 - u, where u is the teacher's normalised entropy at that token
(entropy over its top k plus the tail, divided by log V), and each critiqued
step by 1 - u, where u is the critic's uncertainty; ``"gate"`` drops tokens and
steps with u above ``uncertainty_threshold`` instead.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any, Literal

import torch
from torch import Tensor

from opd.distill.batch import EpisodeBatch
from opd.distill.divergences import get_divergence
from opd.distill.sampled import token_logprobs
from opd.distill.token_divergence import token_divergence
from opd.errors import ConfigError

__all__ = ["LOSS_KINDS", "LOSS_TERMS", "LossConfig", "LossResult", "compute_loss"]

LOSS_TERMS = ("token", "step", "episode", "step_critique", "step_outcome", "episode_critique", "episode_outcome", "sft")
LOSS_KINDS = (*LOSS_TERMS, "hybrid")
_LOGIT_TERMS = {"token", "step"}
_CRITIQUE_TERMS = {"step_critique", "episode_critique"}

LossKind = Literal["token", "step", "episode", "step_critique", "step_outcome", "episode_critique", "episode_outcome", "sft", "hybrid"]


@dataclasses.dataclass(frozen=True)
class LossConfig:
    kind: LossKind = "token"
    divergence: str = "reverse_kl"  # a name from opd.distill.divergence_names()
    divergence_params: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # e.g. {"beta": 0.5} for jsd
    episode_return: Literal["reverse_kl", "outcome"] = "reverse_kl"  # the return of the ``episode`` term
    hybrid_weights: Mapping[str, float] = dataclasses.field(default_factory=lambda: {"token": 1.0, "episode": 0.1})
    objective: Literal["pg", "rwr"] = "pg"  # how outcome terms use their advantage
    rwr_temperature: float = 0.1  # rwr: weight = exp(advantage / temperature), clipped at 20x the mean
    uncertainty: Literal["none", "weight", "gate"] = "none"  # down-weight or drop feedback the teacher is unsure of
    uncertainty_threshold: float = 0.5  # gate: drop feedback with normalised uncertainty above this

    def __post_init__(self) -> None:
        if self.kind not in LOSS_KINDS:
            raise ConfigError(f"loss kind must be one of {list(LOSS_KINDS)}, got {self.kind!r}.")
        if self.episode_return not in ("reverse_kl", "outcome"):
            raise ConfigError(f"episode_return must be 'reverse_kl' or 'outcome', got {self.episode_return!r}.")
        bad = set(self.hybrid_weights) - set(LOSS_TERMS)
        if self.kind == "hybrid" and (bad or not self.hybrid_weights):
            raise ConfigError(f"hybrid_weights must weigh some of {list(LOSS_TERMS)}; got {dict(self.hybrid_weights)}.")
        if self.objective not in ("pg", "rwr") or self.rwr_temperature <= 0:
            raise ConfigError(
                f"objective must be 'pg' or 'rwr' and rwr_temperature positive; got {self.objective!r}, {self.rwr_temperature}."
            )
        if self.uncertainty not in ("none", "weight", "gate") or not 0.0 <= self.uncertainty_threshold <= 1.0:
            raise ConfigError(f"uncertainty must be none, weight or gate with a threshold in [0, 1]; got {self.uncertainty!r}.")
        get_divergence(self.divergence, **self.divergence_params)  # fail early on a bad name or parameter

    @property
    def terms(self) -> dict[str, float]:
        """The terms summed and their weights (one term of weight 1 unless hybrid)."""
        return dict(self.hybrid_weights) if self.kind == "hybrid" else {self.kind: 1.0}

    @property
    def needs_logits(self) -> bool:
        """Whether a teacher's token log-probs are needed (a white-box teacher or self-distillation)."""
        return any(t in _LOGIT_TERMS or (t == "episode" and self.episode_return == "reverse_kl") for t in self.terms)

    @property
    def needs_critiques(self) -> bool:
        return any(t in _CRITIQUE_TERMS for t in self.terms)

    @property
    def needs_teacher(self) -> bool:
        return self.needs_logits or self.needs_critiques


@dataclasses.dataclass(frozen=True)
class LossResult:
    loss: Tensor  # scalar, differentiable
    metrics: dict[str, float]


def compute_loss(logits_BTV: Tensor, batch: EpisodeBatch, config: LossConfig) -> LossResult:
    """The configured loss on ``batch``; ``logits_BTV`` are the student's logits on ``batch.input_ids_BT``."""
    parts = config.terms
    terms = {name: _TERMS[name](logits_BTV, batch, config) for name in parts}
    loss = sum(weight * terms[name] for name, weight in parts.items())
    metrics = {f"loss/{name}": float(value.detach()) for name, value in terms.items()}
    metrics["loss"] = float(loss.detach())
    return LossResult(loss=loss, metrics=metrics)


def _per_token(logits_BTV: Tensor, batch: EpisodeBatch, config: LossConfig) -> tuple[Tensor, Tensor]:
    """Per-token divergences and per-token weights (1 unless uncertainty weighting is on)."""
    if batch.teacher is None:
        raise ConfigError(f"A {config.kind!r} loss needs teacher token annotations; this batch has none.")
    divergence = get_divergence(config.divergence, **config.divergence_params)
    values_BT = token_divergence(logits_BTV, batch.teacher, divergence, mask_BT=batch.policy_BT)
    weights_BT = batch.policy_BT.float()
    if config.uncertainty != "none":
        weights_BT = weights_BT * _confidence(_teacher_uncertainty(batch, logits_BTV.shape[-1]), config)
    return values_BT, weights_BT


def _teacher_uncertainty(batch: EpisodeBatch, vocab_size: int) -> Tensor:
    """(B, T) the teacher's entropy over its top k plus the tail bucket, divided by log V (a lower bound on the true entropy)."""
    assert batch.teacher is not None
    p_BTK = batch.teacher.logprobs.float().exp()
    tail_BT = batch.teacher.tail_mass.float()
    entropy_BT = -(p_BTK * batch.teacher.logprobs.float()).sum(-1) - tail_BT * tail_BT.clamp_min(1e-30).log()
    return (entropy_BT / math.log(vocab_size)).clamp(0.0, 1.0)


def _confidence(uncertainty: Tensor, config: LossConfig) -> Tensor:
    """Weights from normalised uncertainty; unknown (NaN) uncertainty counts as certain."""
    known = torch.nan_to_num(uncertainty, nan=0.0)
    if config.uncertainty == "gate":
        return (known <= config.uncertainty_threshold).float()
    return 1.0 - known


def token_loss(logits_BTV: Tensor, batch: EpisodeBatch, config: LossConfig) -> Tensor:
    values_BT, weights_BT = _per_token(logits_BTV, batch, config)
    return torch.where(weights_BT > 0, values_BT * weights_BT, 0.0).sum() / weights_BT.sum().clamp_min(1e-8)


def step_loss(logits_BTV: Tensor, batch: EpisodeBatch, config: LossConfig) -> Tensor:
    values_BT, weights_BT = _per_token(logits_BTV, batch, config)
    group_BT = _step_groups(batch)
    mask = weights_BT > 0
    size = group_BT.numel() and int(group_BT.max()) + 1
    sums = torch.zeros(size, dtype=values_BT.dtype, device=values_BT.device).index_add(0, group_BT[mask], (values_BT * weights_BT)[mask])
    counts = torch.zeros_like(sums).index_add(0, group_BT[mask], weights_BT[mask])
    present = counts > 0
    return (sums[present] / counts[present]).mean() if bool(present.any()) else values_BT.sum() * 0.0


def episode_loss(logits_BTV: Tensor, batch: EpisodeBatch, config: LossConfig) -> Tensor:
    if config.episode_return == "outcome":
        return episode_outcome_loss(logits_BTV, batch, config)
    if batch.teacher_sampled_BT is None:
        raise ConfigError("episode_return='reverse_kl' needs teacher annotations; use 'outcome' without a teacher.")
    mask = batch.policy_BT
    estimate_BT = torch.where(mask, batch.sampled_logprobs_BT - batch.teacher_sampled_BT, torch.zeros_like(batch.sampled_logprobs_BT))
    logq_B, tokens_B = _unit_logprobs(logits_BTV, batch, per_step=False)
    return _policy_gradient(logq_B, tokens_B, -estimate_BT.sum(dim=-1), torch.ones_like(tokens_B), "pg", config)


def step_critique_loss(logits_BTV: Tensor, batch: EpisodeBatch, config: LossConfig) -> Tensor:
    scores_BS, weights_BS = _critic_tensors(batch, config)
    logq_BS, tokens_BS = _unit_logprobs(logits_BTV, batch, per_step=True)
    return _policy_gradient(logq_BS, tokens_BS, scores_BS, weights_BS, config.objective, config)


def step_outcome_loss(logits_BTV: Tensor, batch: EpisodeBatch, config: LossConfig) -> Tensor:
    to_go_BS = batch.step_rewards_BS.flip(-1).cumsum(-1).flip(-1)  # reward from each step to the episode's end
    logq_BS, tokens_BS = _unit_logprobs(logits_BTV, batch, per_step=True)
    return _policy_gradient(logq_BS, tokens_BS, to_go_BS, torch.ones_like(to_go_BS), config.objective, config)


def episode_critique_loss(logits_BTV: Tensor, batch: EpisodeBatch, config: LossConfig) -> Tensor:
    scores_BS, weights_BS = _critic_tensors(batch, config)
    scored_BS = ~scores_BS.isnan() & (weights_BS > 0)
    count_B = scored_BS.sum(-1)
    mean_B = torch.where(scored_BS, scores_BS * weights_BS, 0.0).sum(-1) / torch.where(scored_BS, weights_BS, 0.0).sum(-1).clamp_min(1e-8)
    logq_B, tokens_B = _unit_logprobs(logits_BTV, batch, per_step=False)
    return _policy_gradient(
        logq_B, tokens_B, torch.where(count_B > 0, mean_B, torch.nan), torch.ones_like(mean_B), config.objective, config
    )


def episode_outcome_loss(logits_BTV: Tensor, batch: EpisodeBatch, config: LossConfig) -> Tensor:
    logq_B, tokens_B = _unit_logprobs(logits_BTV, batch, per_step=False)
    return _policy_gradient(logq_B, tokens_B, batch.rewards_B.to(logq_B.device), torch.ones_like(tokens_B), config.objective, config)


def sft_loss(logits_BTV: Tensor, batch: EpisodeBatch, config: LossConfig) -> Tensor:
    logq_BT = token_logprobs(logits_BTV, batch.targets_BT)
    return -torch.where(batch.policy_BT, logq_BT, 0.0).sum() / batch.policy_BT.sum().clamp_min(1)


def _critic_tensors(batch: EpisodeBatch, config: LossConfig) -> tuple[Tensor, Tensor]:
    """(B, S) scaled critic scores (NaN: unannotated) and per-step weights from the critic's uncertainty."""
    if batch.step_scores_BS is None or batch.step_uncertainty_BS is None:
        raise ConfigError(f"A {config.kind!r} loss needs critiques; configure a critic.")
    weights_BS = torch.ones_like(batch.step_scores_BS)
    if config.uncertainty != "none":
        weights_BS = _confidence(batch.step_uncertainty_BS, config)
    return batch.step_scores_BS, weights_BS


def _step_groups(batch: EpisodeBatch) -> Tensor:
    """(B, T) one id per (episode, step): b * S + step."""
    steps = int(batch.steps_B.max())
    return torch.arange(len(batch.steps_B), device=batch.step_BT.device)[:, None] * steps + batch.step_BT.clamp_min(0)


def _unit_logprobs(logits_BTV: Tensor, batch: EpisodeBatch, *, per_step: bool) -> tuple[Tensor, Tensor]:
    """Summed student log-prob and policy-token count per episode (B,) or per step (B, S)."""
    logq_BT = torch.where(batch.policy_BT, token_logprobs(logits_BTV, batch.targets_BT), 0.0)
    mask_BT = batch.policy_BT.to(logq_BT.dtype)
    if not per_step:
        return logq_BT.sum(-1), mask_BT.sum(-1)
    B, S = len(batch.steps_B), int(batch.steps_B.max())
    group = _step_groups(batch).flatten()
    logq = torch.zeros(B * S, dtype=logq_BT.dtype, device=logq_BT.device).index_add(0, group, logq_BT.flatten())
    tokens = torch.zeros(B * S, dtype=logq_BT.dtype, device=logq_BT.device).index_add(0, group, mask_BT.flatten())
    return logq.view(B, S), tokens.view(B, S)


def _policy_gradient(logq_U: Tensor, tokens_U: Tensor, returns_U: Tensor, weights_U: Tensor, objective: str, config: LossConfig) -> Tensor:
    """PG or RWR over units (episodes or steps) with a batch-mean baseline; NaN returns and zero weights drop out.

    Normalised by the policy tokens of the units that count, so the scale matches the token losses.
    """
    returns_U, weights_U = returns_U.to(logq_U.device), weights_U.to(logq_U.device)
    present = ~returns_U.isnan() & (tokens_U > 0) & (weights_U > 0)
    if not bool(present.any()):
        return logq_U.sum() * 0.0  # nothing to learn from in this batch (e.g. every step unannotated)
    returns = returns_U[present]
    advantage = (returns - returns.mean()).detach()
    if objective == "rwr":
        scale = torch.exp((advantage - advantage.max()) / config.rwr_temperature)
        scale = (scale / scale.mean()).clamp(max=20.0)
    else:
        scale = advantage
    return -(weights_U[present] * scale * logq_U[present]).sum() / tokens_U[present].sum().clamp_min(1)


_TERMS = {
    "token": token_loss,
    "step": step_loss,
    "episode": episode_loss,
    "step_critique": step_critique_loss,
    "step_outcome": step_outcome_loss,
    "episode_critique": episode_critique_loss,
    "episode_outcome": episode_outcome_loss,
    "sft": sft_loss,
}
