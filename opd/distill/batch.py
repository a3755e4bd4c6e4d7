"""Stored episodes -> the tensors a loss needs, aligned for next-token prediction.

A causal LM's logits at position t predict token t + 1, so every per-token
quantity here is indexed by the *predicted* token: ``targets_BT[b, t]`` is
token t + 1 of episode b, predicted by ``logits[b, t]``. ``policy_BT`` marks the
targets the policy wrote (prompt and tool-result tokens are False), ``step_BT``
which step each target belongs to (-1 for padding). Teacher top-k annotations
are scattered into the same layout. Nothing is re-tokenised: the ids are the
stored ones.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from opd.distill.topk import TopKLogprobs
from opd.errors import ConfigError
from opd.trajectories import Episode

__all__ = ["EpisodeBatch", "make_batch"]


@dataclasses.dataclass(frozen=True)
class EpisodeBatch:
    input_ids_BT: Tensor  # (B, T) int64, right-padded: the model's input (each episode but its last token)
    attention_BT: Tensor  # (B, T) int64
    targets_BT: Tensor  # (B, T) int64, the token each position predicts
    policy_BT: Tensor  # (B, T) bool, targets the policy wrote
    step_BT: Tensor  # (B, T) int64, step index of each target, -1 at padding
    sampled_logprobs_BT: Tensor  # (B, T) float32, the policy's log-prob of each target when it was sampled (NaN elsewhere)
    teacher: TopKLogprobs | None  # (B, T, K) at targets the teacher annotated; None if no teacher
    teacher_sampled_BT: Tensor | None  # (B, T) the teacher's log-prob of each target (log tail mass if outside the top k)
    rewards_B: Tensor  # (B,) the env's episode reward
    steps_B: Tensor  # (B,) number of steps
    step_rewards_BS: Tensor  # (B, S) float32, the env's reward at each step (0 past an episode's end)
    step_scores_BS: Tensor | None = None  # (B, S) a critic's score per step scaled to [0, 1]; NaN: unannotated or no step
    step_uncertainty_BS: Tensor | None = None  # (B, S) the critic's uncertainty in [0, 1]; NaN where unknown
    importance_clip: float | None = None  # set: weigh policy tokens by the clipped current/recorded ratio (opd.distill.importance)

    @property
    def policy_tokens(self) -> int:
        return int(self.policy_BT.sum())

    def to(self, device: torch.device | str) -> EpisodeBatch:
        """The same batch with every tensor on ``device`` (where the model is)."""
        moved = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for name, value in moved.items():
            if isinstance(value, Tensor):
                moved[name] = value.to(device)
            elif isinstance(value, TopKLogprobs):
                moved[name] = TopKLogprobs(value.token_ids.to(device), value.logprobs.to(device), value.tail_mass.to(device))
        return EpisodeBatch(**moved)


def make_batch(
    episodes: Sequence[Episode], *, teacher: str | None = None, critic: str | None = None, score_range: tuple[float, float] = (0.0, 10.0)
) -> EpisodeBatch:
    """Tensors for ``episodes``; with ``teacher``, that teacher's top-k annotations are required on every step.

    With ``critic``, that critic's step scores (scaled from ``score_range`` to [0, 1]) and uncertainties are
    gathered; steps it left unannotated are NaN and drop out of the losses that use them.
    """
    if not episodes:
        raise ConfigError("make_batch needs at least one episode.")
    length = max(e.num_tokens for e in episodes) - 1
    if length < 1:
        raise ConfigError("Episodes need at least two tokens to train on.")
    B = len(episodes)
    ids = torch.zeros((B, length + 1), dtype=torch.long)
    attention = torch.zeros((B, length), dtype=torch.long)
    policy = torch.zeros((B, length + 1), dtype=torch.bool)
    step = torch.full((B, length + 1), -1, dtype=torch.long)
    sampled = torch.full((B, length + 1), float("nan"))
    for b, episode in enumerate(episodes):
        n = episode.num_tokens
        ids[b, :n] = torch.from_numpy(episode.token_ids.astype(np.int64))
        attention[b, : n - 1] = 1
        policy[b, :n] = torch.from_numpy(episode.policy_mask)
        step[b, :n] = torch.from_numpy(np.repeat([s.index for s in episode.steps], [len(s.token_ids) for s in episode.steps]))
        sampled[b, :n] = torch.from_numpy(np.concatenate([s.logprobs for s in episode.steps]))
    topk, teacher_sampled = (None, None) if teacher is None else _teacher_tensors(episodes, teacher, ids, policy, length + 1)
    shift = slice(1, None)  # targets are tokens 1..N
    return EpisodeBatch(
        input_ids_BT=ids[:, :-1],
        attention_BT=attention,
        targets_BT=ids[:, shift],
        policy_BT=policy[:, shift],
        step_BT=step[:, shift],
        sampled_logprobs_BT=sampled[:, shift],
        teacher=None if topk is None else TopKLogprobs(topk.token_ids[:, shift], topk.logprobs[:, shift], topk.tail_mass[:, shift]),
        teacher_sampled_BT=None if teacher_sampled is None else teacher_sampled[:, shift],
        rewards_B=torch.tensor([e.reward for e in episodes], dtype=torch.float32),
        steps_B=torch.tensor([len(e.steps) for e in episodes]),
        step_rewards_BS=_per_step(episodes, lambda e: {s.index: s.reward for s in e.steps}, fill=0.0),
        step_scores_BS=None if critic is None else _critic_scores(episodes, critic, score_range),
        step_uncertainty_BS=None if critic is None else _per_step(episodes, lambda e: _critiques(e, critic, "uncertainty")),
    )


def _critiques(episode: Episode, critic: str, field: str) -> dict[int, float]:
    values = {c.step_index: getattr(c, field) for c in episode.annotations.critiques if c.teacher == critic}
    return {i: v for i, v in values.items() if v is not None}


def _critic_scores(episodes: Sequence[Episode], critic: str, score_range: tuple[float, float]) -> Tensor:
    low, high = score_range
    return (_per_step(episodes, lambda e: _critiques(e, critic, "score")) - low) / (high - low)


def _per_step(episodes: Sequence[Episode], values: Callable[[Episode], dict[int, float]], *, fill: float = float("nan")) -> Tensor:
    """(B, S) float32 of per-step values, ``fill`` where an episode has no value for a step."""
    out = torch.full((len(episodes), max(len(e.steps) for e in episodes)), fill)
    for b, episode in enumerate(episodes):
        for index, value in values(episode).items():
            out[b, index] = value
    return out


def _teacher_tensors(episodes: Sequence[Episode], teacher: str, ids: Tensor, policy: Tensor, length: int) -> tuple[TopKLogprobs, Tensor]:
    ks = {a.k for e in episodes for a in e.annotations.token_logprobs if a.teacher == teacher}
    if len(ks) != 1:
        raise ConfigError(f"Episodes need top-k annotations by teacher {teacher!r}, all with one k; found k in {sorted(ks)}.")
    k = ks.pop()
    B = len(episodes)
    token_ids = torch.zeros((B, length, k), dtype=torch.long)
    logprobs = torch.full((B, length, k), -1e4)  # unannotated positions: a finite stand-in, always masked out
    tail = torch.ones((B, length))
    for b, episode in enumerate(episodes):
        by_step = {a.step_index: a for a in episode.annotations.token_logprobs if a.teacher == teacher}
        offset = 0
        for s in episode.steps:
            if s.index not in by_step and s.num_policy_tokens:
                raise ConfigError(f"Episode {episode.id} step {s.index} has no annotation by teacher {teacher!r}.")
            positions = torch.from_numpy(offset + np.flatnonzero(s.policy_mask))
            offset += len(s.token_ids)
            if s.num_policy_tokens:
                a = by_step[s.index]
                token_ids[b, positions] = torch.from_numpy(a.token_ids.astype(np.int64))
                logprobs[b, positions] = torch.from_numpy(a.logprobs.astype(np.float32))
                tail[b, positions] = torch.from_numpy(a.tail_mass.astype(np.float32))
    hits = token_ids == ids.unsqueeze(-1)
    inside = torch.where(hits, logprobs, torch.zeros_like(logprobs)).sum(-1)
    sampled = torch.where(hits.any(-1), inside, torch.log(tail.clamp_min(1e-30)))
    sampled = torch.where(policy, sampled, torch.full_like(sampled, float("nan")))
    return TopKLogprobs(token_ids, logprobs, tail.clamp_min(0.0)), sampled
