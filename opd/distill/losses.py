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
(entropy over its top k plus the tail, divided by log(k + 1)), and each critiqued
step by 1 - u, where u is the critic's uncertainty; ``"gate"`` drops tokens and
steps with u above ``uncertainty_threshold`` instead.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Iterable, Mapping
from typing import Any, Literal

import torch
from torch import Tensor

from opd.distill.batch import EpisodeBatch
from opd.distill.divergences import get_divergence
from opd.distill.importance import importance_weights
from opd.distill.sampled import token_logprobs
from opd.distill.step_weights import StepWeights, step_weights_BT
from opd.distill.token_divergence import token_divergence
from opd.errors import ConfigError, UnknownNameError

__all__ = ["LOSS_KINDS", "LOSS_TERMS", "LossConfig", "LossResult", "LossTotals", "compute_loss", "loss_totals", "teacher_uncertainty"]

LOSS_TERMS = ("token", "step", "episode", "step_critique", "step_outcome", "episode_critique", "episode_outcome", "sft")
LOSS_KINDS = (*LOSS_TERMS, "hybrid")
_LOGIT_TERMS = {"token", "step"}
_CRITIQUE_TERMS = {"step_critique", "episode_critique"}

LossKind = Literal["token", "step", "episode", "step_critique", "step_outcome", "episode_critique", "episode_outcome", "sft", "hybrid"]


@dataclasses.dataclass(frozen=True)
class LossConfig:
    kind: LossKind = "token"
    # A name from opd.distill.divergence_names(). JSD(beta=0.5) by default: in benchmarks/stability.py it was the
    # one divergence the regression guard never flagged (16 runs, a strong and a weak teacher), where reverse KL fell
    # 13 points behind it with the weak teacher and forward KL was flagged with the strong one (docs/benchmarks.md).
    divergence: str = "jsd"
    divergence_params: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # e.g. {"beta": 0.1} for jsd (default 0.5)
    episode_return: Literal["reverse_kl", "outcome"] = "reverse_kl"  # the return of the ``episode`` term
    hybrid_weights: Mapping[str, float] = dataclasses.field(default_factory=lambda: {"token": 1.0, "episode": 0.1})
    objective: Literal["pg", "rwr"] = "pg"  # how outcome terms use their advantage
    rwr_temperature: float = 0.1  # rwr: weight = exp(advantage / temperature), clipped at 20x the mean
    uncertainty: Literal["none", "weight", "gate"] = "none"  # down-weight or drop feedback the teacher is unsure of
    uncertainty_threshold: float = 0.5  # gate: drop feedback with normalised uncertainty above this
    step_weights: StepWeights = StepWeights()  # the token term: weigh steps by teacher-student divergence or by position

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
        try:  # fail early on a bad name or parameter
            get_divergence(self.divergence, **self.divergence_params)
        except UnknownNameError as exc:  # a ValueError, so that config validation reports it at its key
            raise ConfigError(f"divergence: {exc}") from None
        if self.step_weights.by != "none" and "token" not in self.terms:
            raise ConfigError(
                f"step_weights weigh the token term; the {self.kind!r} loss has none (use kind: token, or hybrid with token)."
            )

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
class LossTotals:
    """What each term's mean divides by (and the episode baselines' sums): one batch's own, or summed over ranks.

    Under data parallelism each rank holds a shard of the global batch and divides
    by the *global* totals, so the ranks' losses add up to the loss of the whole
    batch exactly; a per-rank mean averaged over ranks would not be the global mean
    when shards hold different numbers of tokens (see opd/distill/distributed.py).
    The one exception is ``objective: rwr``, whose weights are normalised per shard.
    """

    values: Mapping[str, float] = dataclasses.field(default_factory=dict)

    @classmethod
    def summed(cls, parts: Iterable[LossTotals]) -> LossTotals:
        total: dict[str, float] = {}
        for part in parts:
            for key, value in part.values.items():
                total[key] = total.get(key, 0.0) + value
        return cls(total)

    def __getitem__(self, key: str) -> float:
        return self.values.get(key, 0.0)


@dataclasses.dataclass(frozen=True)
class LossResult:
    loss: Tensor  # scalar, differentiable
    metrics: dict[str, float]


def loss_totals(batch: EpisodeBatch, config: LossConfig) -> LossTotals:
    """The totals of ``batch`` alone (sum them over ranks for a data-parallel step)."""
    values: dict[str, float] = {"policy_tokens": float(batch.policy_tokens)}
    for term in config.terms:
        if term == "token":
            values["token/weight"] = float(_token_weights(batch, config).sum())
        elif term == "step":
            values["step/steps"] = float((_step_sums(_token_weights(batch, config), batch) > 0).sum())
        elif term == "sft":
            values["sft/tokens"] = float(batch.policy_tokens)
        else:
            returns_U, weights_U, present_U, tokens_U = _units(term, batch, config)
            values[f"{term}/units"] = float(present_U.sum())
            values[f"{term}/returns"] = float(returns_U[present_U].sum())
            values[f"{term}/tokens"] = float(tokens_U[present_U].sum())
    return LossTotals(values)


def compute_loss(logits_BTV: Tensor, batch: EpisodeBatch, config: LossConfig, totals: LossTotals | None = None) -> LossResult:
    """The configured loss on ``batch``; ``logits_BTV`` are the student's logits on ``batch.input_ids_BT``.

    ``totals``: what the means divide by; default the batch's own (:func:`loss_totals`).
    """
    parts = config.terms
    totals = loss_totals(batch, config) if totals is None else totals
    shared = _PerToken(logits_BTV, batch, config)
    terms = {name: _term(name, shared, batch, config, totals) for name in parts}
    loss = sum(weight * terms[name] for name, weight in parts.items())
    metrics = {f"loss/{name}": float(value.detach()) for name, value in terms.items()}
    metrics["loss"] = float(loss.detach())
    if shared.importance_BT is not None:  # shares of the global means, like the loss: they add up across ranks
        weights = shared.importance_BT[batch.policy_BT]
        metrics["importance/mean"] = float(weights.sum()) / max(totals["policy_tokens"], 1.0)
        metrics["importance/clipped"] = float((weights >= batch.importance_clip).sum()) / max(totals["policy_tokens"], 1.0)
    return LossResult(loss=loss, metrics=metrics)


class _PerToken:
    """Per-token quantities of one ``compute_loss`` call, each computed once however many terms use it (a hybrid's do)."""

    def __init__(self, logits_BTV: Tensor, batch: EpisodeBatch, config: LossConfig) -> None:
        self.logits_BTV, self.batch, self.config = logits_BTV, batch, config

    @functools.cached_property
    def divergence_BT(self) -> Tensor:
        return _per_token(self.logits_BTV, self.batch, self.config)

    @functools.cached_property
    def weights_BT(self) -> Tensor:
        return _token_weights(self.batch, self.config).to(self.logits_BTV.device)

    @functools.cached_property
    def logq_BT(self) -> Tensor:
        return torch.where(self.batch.policy_BT, token_logprobs(self.logits_BTV, self.batch.targets_BT), 0.0)

    @functools.cached_property
    def importance_BT(self) -> Tensor | None:
        """(B, T) detached importance weights of stored episodes' tokens, or None when the batch asks for none."""
        if self.batch.importance_clip is None:
            return None
        recorded_BT = self.batch.sampled_logprobs_BT.to(self.logits_BTV.device)
        return importance_weights(self.logq_BT, recorded_BT, self.batch.policy_BT, self.batch.importance_clip)

    def weighted(self, values_BT: Tensor) -> Tensor:
        """``values_BT`` times the importance weights, if any."""
        return values_BT if self.importance_BT is None else values_BT * self.importance_BT


def _term(name: str, shared: _PerToken, batch: EpisodeBatch, config: LossConfig, totals: LossTotals) -> Tensor:
    if name in ("token", "step"):
        weighted_BT = torch.where(shared.weights_BT > 0, shared.weighted(shared.divergence_BT * shared.weights_BT), 0.0)
        if name == "token":
            return weighted_BT.sum() / max(totals["token/weight"], 1e-8)
        sums, counts = _step_sums(weighted_BT, batch), _step_sums(shared.weights_BT, batch)
        present = counts > 0
        return (sums[present] / counts[present]).sum() / max(totals["step/steps"], 1.0)
    logq_BT = shared.weighted(shared.logq_BT)
    if name == "sft":
        return -logq_BT.sum() / max(totals["sft/tokens"], 1.0)
    returns_U, weights_U, present_U, _ = _units(name, batch, config)
    logq_U = logq_BT.sum(-1) if returns_U.dim() == 1 else _step_sums(logq_BT, batch)
    advantage = (returns_U[present_U] - totals[f"{name}/returns"] / max(totals[f"{name}/units"], 1.0)).to(logq_U.device)
    if config.objective == "rwr" and name != "episode":
        scale = torch.exp((advantage - advantage.max()) / config.rwr_temperature) if advantage.numel() else advantage
        scale = (scale / scale.mean()).clamp(max=20.0) if advantage.numel() else scale
    else:
        scale = advantage
    weights = weights_U[present_U].to(logq_U.device)
    return -(weights * scale * logq_U[present_U]).sum() / max(totals[f"{name}/tokens"], 1.0)


def _per_token(logits_BTV: Tensor, batch: EpisodeBatch, config: LossConfig) -> Tensor:
    if batch.teacher is None:
        raise ConfigError(f"A {config.kind!r} loss needs teacher token annotations; this batch has none.")
    divergence = get_divergence(config.divergence, **config.divergence_params)
    return token_divergence(logits_BTV, batch.teacher, divergence, mask_BT=batch.policy_BT)


def _token_weights(batch: EpisodeBatch, config: LossConfig) -> Tensor:
    """(B, T) weight of each target in the logit losses: 1 on policy tokens, times its step's weight, scaled or gated by uncertainty."""
    weights_BT = batch.policy_BT.float()
    if config.step_weights.by != "none":
        weights_BT = weights_BT * step_weights_BT(batch, config.step_weights).to(weights_BT.device)
    if config.uncertainty == "none":
        return weights_BT
    if batch.teacher is None:
        raise ConfigError(f"A {config.kind!r} loss needs teacher token annotations; this batch has none.")
    return weights_BT * _confidence(teacher_uncertainty(batch), config)


def teacher_uncertainty(batch: EpisodeBatch) -> Tensor:
    """(B, T) the teacher's entropy over its top k plus the tail bucket, divided by log(k + 1), its largest value."""
    assert batch.teacher is not None
    logprobs_BTK = batch.teacher.logprobs.float()
    tail_BT = batch.teacher.tail_mass.float()
    entropy_BT = -(logprobs_BTK.exp() * logprobs_BTK).sum(-1) - tail_BT * tail_BT.clamp_min(1e-30).log()
    return (entropy_BT / math.log(logprobs_BTK.shape[-1] + 1)).clamp(0.0, 1.0)


def _confidence(uncertainty: Tensor, config: LossConfig) -> Tensor:
    """Weights from normalised uncertainty; unknown (NaN) uncertainty counts as certain."""
    known = torch.nan_to_num(uncertainty, nan=0.0)
    if config.uncertainty == "gate":
        return (known <= config.uncertainty_threshold).float()
    return 1.0 - known


def _units(term: str, batch: EpisodeBatch, config: LossConfig) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """For an outcome term: per unit (episode (B,) or step (B, S)) its return, weight, whether it counts, and its policy tokens."""
    per_step = term in ("step_critique", "step_outcome")
    tokens_U = _step_sums(batch.policy_BT.float(), batch) if per_step else batch.policy_BT.float().sum(-1)
    weights_U = torch.ones_like(tokens_U)
    if term == "episode":
        if config.episode_return == "outcome":
            returns_U = batch.rewards_B
        elif batch.teacher_sampled_BT is None:
            raise ConfigError("episode_return='reverse_kl' needs teacher annotations; use 'outcome' without a teacher.")
        else:
            estimate_BT = torch.where(batch.policy_BT, batch.sampled_logprobs_BT - batch.teacher_sampled_BT, 0.0)
            returns_U = -estimate_BT.sum(dim=-1)
    elif term == "episode_outcome":
        returns_U = batch.rewards_B
    elif term == "step_outcome":
        returns_U = batch.step_rewards_BS.flip(-1).cumsum(-1).flip(-1)  # reward from each step to the episode's end
    else:
        scores_BS, step_weights_BS = _critic_tensors(batch, config)
        if term == "step_critique":
            returns_U, weights_U = scores_BS, step_weights_BS
        else:  # episode_critique: the weighted mean score of the episode's graded steps
            scored_BS = ~scores_BS.isnan() & (step_weights_BS > 0)
            weight_B = torch.where(scored_BS, step_weights_BS, 0.0).sum(-1)
            mean_B = torch.where(scored_BS, scores_BS * step_weights_BS, 0.0).sum(-1) / weight_B.clamp_min(1e-8)
            returns_U = torch.where(scored_BS.any(-1), mean_B, torch.nan)
    returns_U = returns_U.to(tokens_U.device)
    present_U = ~returns_U.isnan() & (tokens_U > 0) & (weights_U > 0)
    return torch.nan_to_num(returns_U), weights_U, present_U, tokens_U


def _critic_tensors(batch: EpisodeBatch, config: LossConfig) -> tuple[Tensor, Tensor]:
    """(B, S) scaled critic scores (NaN: unannotated) and per-step weights from the critic's uncertainty."""
    if batch.step_scores_BS is None or batch.step_uncertainty_BS is None:
        raise ConfigError(f"A {config.kind!r} loss needs critiques; configure a critic.")
    weights_BS = torch.ones_like(batch.step_scores_BS)
    if config.uncertainty != "none":
        weights_BS = _confidence(batch.step_uncertainty_BS, config)
    return batch.step_scores_BS, weights_BS


def _step_sums(values_BT: Tensor, batch: EpisodeBatch) -> Tensor:
    """(B, S) the sum of ``values_BT`` over each step's policy tokens."""
    B, S = len(batch.steps_B), int(batch.steps_B.max())
    group_BT = torch.arange(B, device=values_BT.device)[:, None] * S + batch.step_BT.to(values_BT.device).clamp_min(0)
    mask = batch.policy_BT.to(values_BT.device)
    sums = torch.zeros(B * S, dtype=values_BT.dtype, device=values_BT.device).index_add(0, group_BT[mask], values_BT[mask])
    return sums.view(B, S)
