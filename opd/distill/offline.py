"""Batches from the trajectory store: offline distillation, and replay mixed with fresh rollouts.

The ``replay`` section of a training config selects stored episodes (runs,
suites, success, a teacher that annotated them, a date range). Each update
then takes ``round(ratio * episodes_per_update)`` of them, in store order and
cycling, and plays only the rest fresh: ratio 1 trains offline on the store
alone, ratio 0.5 mixes half and half. The pool is fixed when the run starts,
so a run does not replay the episodes it writes itself. With ``mode:
restart`` the stored episodes are not trained on but restarted: the student
plays on from a stored step (``opd.agents.branch``), late steps first under a
depth curriculum, and those new episodes are trained on like fresh ones.

Stored episodes keep the annotations they have: if the loop's teacher (by
name) already scored an episode, that is reused and not paid again; one it has
not scored is scored now and the annotations are added to the source store, so
the next run reuses them. Each policy token's loss term is importance-weighted
by the clipped ratio of the current and the recorded student log-probs (see
``opd.distill.importance``); on a run's own episodes before any update (staleness
0) the offline step is the on-policy step.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from datetime import date, datetime, time
from typing import Any, Literal

import numpy as np

from opd.agents.branch import play_from
from opd.agents.policy import CausalLMPolicy, SamplingConfig
from opd.distill.batch import EpisodeBatch
from opd.distill.distributed import DistributedContext
from opd.errors import ConfigError
from opd.trajectories import Episode, EpisodeFilter, TrajectoryStore

__all__ = ["ReplayConfig", "StoreReplay"]


@dataclasses.dataclass(frozen=True)
class ReplayConfig:
    store: str | None = None  # where the stored episodes are: a SQLite path or a URL; None: the run's own store
    runs: tuple[str, ...] = ()  # only episodes of these run ids (empty: any run)
    suites: tuple[str, ...] = ()  # only episodes of these suites (empty: any suite)
    success: bool | None = None  # only verified successes (true) or non-successes (false); None: both
    teacher: str | None = None  # only episodes this teacher (by name) annotated, e.g. after `opd annotate`
    since: datetime | date | None = None  # only episodes written at or after this time (UTC unless it says); a date: its midnight
    until: datetime | date | None = None  # only episodes written before this time
    ratio: float = 1.0  # fraction of each update's episodes taken from the store; 1: offline only, 0: none
    importance: Literal["token", "none"] = "token"  # token: weight each policy token by the clipped current/recorded ratio
    importance_clip: float = 2.0  # the largest importance weight (truncated importance sampling)
    mode: Literal["episodes", "restart"] = "episodes"  # episodes: train on them; restart: the student plays on from their stored states
    curriculum_updates: int | None = None  # restart: the start moves from each episode's last step to its first over this
    # many updates (late states first); None: a step drawn uniformly

    def __post_init__(self) -> None:
        for name in ("runs", "suites"):  # config files give lists
            value = getattr(self, name)
            object.__setattr__(self, name, (value,) if isinstance(value, str) else tuple(value))
        for name in ("since", "until"):
            value = getattr(self, name)
            if isinstance(value, date) and not isinstance(value, datetime):  # YAML reads 2026-11-01 as a date
                object.__setattr__(self, name, datetime.combine(value, time()))
            elif isinstance(value, str):
                try:
                    object.__setattr__(self, name, datetime.fromisoformat(value))
                except ValueError as exc:
                    raise ConfigError(f"replay.{name} must be an ISO 8601 date or time, got {value!r}.") from exc
        if self.mode not in ("episodes", "restart") or (self.curriculum_updates is not None and self.curriculum_updates < 1):
            raise ConfigError(
                "replay.mode must be 'episodes' or 'restart' and curriculum_updates at least 1; "
                f"got {self.mode!r}, {self.curriculum_updates}."
            )
        if not 0.0 <= self.ratio <= 1.0:
            raise ConfigError(f"replay.ratio must lie in [0, 1] (the stored share of each update), got {self.ratio}.")
        if self.importance not in ("token", "none") or self.importance_clip < 1.0:
            raise ConfigError(
                "replay.importance must be 'token' or 'none' and importance_clip at least 1; "
                f"got {self.importance!r}, {self.importance_clip}."
            )

    def where(self) -> EpisodeFilter:
        return EpisodeFilter(
            run_ids=self.runs,
            suites=self.suites,
            success=self.success,
            annotated_by=self.teacher,
            created_after=self.since,
            created_before=self.until,
        )


class StoreReplay:
    """The stored episodes a run draws from, and which of them each update takes."""

    def __init__(self, config: ReplayConfig, store: TrajectoryStore, episodes_per_update: int, ctx: DistributedContext) -> None:
        self.config = config
        self.store = store
        self.ids = store.episode_ids(config.where())
        self.per_update = round(config.ratio * episodes_per_update)
        self.share = ctx.shard(self.per_update) if self.per_update else range(0)  # this rank's stored episodes of each update
        played = episodes_per_update - self.per_update
        self.fresh = ctx.shard(played) if played else range(0)  # this rank's episodes to play
        self.restarts = config.mode == "restart"
        self.ctx = ctx
        self._counts: dict[str, float] = {}
        if self.per_update and not self.ids:
            raise ConfigError(f"replay: no stored episode in {store!r} matches {_describe(config)}; widen the filter or set ratio: 0.")

    def take(self, update: int, annotators: Sequence[Any] = ()) -> list[Episode]:
        """This rank's share of update ``update``'s stored episodes, each annotated by every one of ``annotators``.

        An annotator (anything with ``name`` and ``annotate``) that has not scored an episode scores it
        now, and its annotations are added to the store before the episode is read back.
        """
        episodes = [self.store.get_episode(i) for i in self._chosen(update)]
        episodes = [e for e in episodes if e.num_tokens >= 2]  # a sandbox failed before the policy wrote: nothing to learn
        for annotator in annotators:
            missing = [e for e in episodes if annotator.name not in e.annotations.teachers]
            for episode, added in zip(missing, annotator.annotate(missing) if missing else [], strict=True):
                self.store.add_annotations(episode.id, added)
            if missing:
                episodes = [self.store.get_episode(e.id) for e in episodes]
        self._add("replay/episodes", len(episodes))
        return episodes

    def weigh(self, batch: EpisodeBatch) -> EpisodeBatch:
        """``batch`` with the importance clip the losses apply (none when importance weighting is off)."""
        return batch if self.config.importance == "none" else dataclasses.replace(batch, importance_clip=self.config.importance_clip)

    def metrics(self) -> dict[str, float]:
        """What the store gave since the last call, summed over ranks (a collective: every rank calls it)."""
        counts, self._counts = self.ctx.sum_metrics(self._counts), {}
        if self.restarts:
            n = counts.get("restart/episodes", 0.0)
            return {"restart/episodes": n, "restart/depth": counts.get("depth", 0.0) / n if n else math.nan}
        return {"replay/episodes": counts.get("replay/episodes", 0.0)}

    def restart(self, update: int, policy: CausalLMPolicy, sampling: SamplingConfig, *, seed: int, run_id: str) -> list[Episode]:
        """This rank's share of update ``update``'s episodes played by ``policy`` from stored states, linked to their parents."""
        parents = [e for e in (self.store.get_episode(i) for i in self._chosen(update)) if any(s.num_policy_tokens for s in e.steps)]
        starts = [(e, self._depth(e, update, i, seed)) for i, e in enumerate(parents)]
        seeds = [int(np.random.SeedSequence([seed, update, i, 1]).generate_state(1)[0]) for i in range(len(starts))]
        played = play_from(starts, policy, run_id=run_id, sampling=sampling, seeds=seeds) if starts else []
        self._add("restart/episodes", len(played))
        self._add("depth", sum(step for _, step in starts))
        return played

    def _depth(self, episode: Episode, update: int, i: int, seed: int) -> int:
        """The step to start from: late first under the curriculum, else drawn uniformly (seeded by the run, update and slot)."""
        steps = [s.index for s in episode.steps if s.num_policy_tokens]
        if self.config.curriculum_updates is None:
            return int(np.random.default_rng([seed, update, i]).choice(steps))
        progress = min(1.0, update / self.config.curriculum_updates)
        return steps[round((len(steps) - 1) * (1.0 - progress))]

    def _chosen(self, update: int) -> list[str]:
        return [self.ids[(update * self.per_update + i) % len(self.ids)] for i in self.share]

    def _add(self, key: str, value: float) -> None:
        self._counts[key] = self._counts.get(key, 0.0) + value


def _describe(config: ReplayConfig) -> str:
    fields = {
        k: v
        for k, v in dataclasses.asdict(config).items()
        if k in ("runs", "suites", "success", "teacher", "since", "until") and v not in (None, ())
    }
    return ", ".join(f"{k}={v}" for k, v in fields.items()) or "no filter"
