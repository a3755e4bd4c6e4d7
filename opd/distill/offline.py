"""Batches from the trajectory store: offline distillation, and replay mixed with fresh rollouts.

The ``replay`` section of a training config selects stored episodes (runs,
suites, success, a teacher that annotated them, a date range). Each update
then takes ``round(ratio * episodes_per_update)`` of them, in store order and
cycling, and plays only the rest fresh: ratio 1 trains offline on the store
alone, ratio 0.5 mixes half and half. The pool is fixed when the run starts,
so a run does not replay the episodes it writes itself.

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
from collections.abc import Sequence
from datetime import date, datetime, time
from typing import Any, Literal

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
    since: datetime | None = None  # only episodes written at or after this time (UTC unless it says)
    until: datetime | None = None  # only episodes written before this time
    ratio: float = 1.0  # fraction of each update's episodes taken from the store; 1: offline only, 0: none
    importance: Literal["token", "none"] = "token"  # token: weight each policy token by the clipped current/recorded ratio
    importance_clip: float = 2.0  # the largest importance weight (truncated importance sampling)

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
        if self.per_update and not self.ids:
            raise ConfigError(f"replay: no stored episode in {store!r} matches {_describe(config)}; widen the filter or set ratio: 0.")

    def take(self, update: int, annotators: Sequence[Any] = ()) -> list[Episode]:
        """This rank's share of update ``update``'s stored episodes, each annotated by every one of ``annotators``.

        An annotator (anything with ``name`` and ``annotate``) that has not scored an episode scores it
        now, and its annotations are added to the store before the episode is read back.
        """
        chosen = [self.ids[(update * self.per_update + i) % len(self.ids)] for i in self.share]
        episodes = [self.store.get_episode(i) for i in chosen]
        episodes = [e for e in episodes if e.num_tokens >= 2]  # a sandbox failed before the policy wrote: nothing to learn
        for annotator in annotators:
            missing = [e for e in episodes if annotator.name not in e.annotations.teachers]
            for episode, added in zip(missing, annotator.annotate(missing) if missing else [], strict=True):
                self.store.add_annotations(episode.id, added)
            if missing:
                episodes = [self.store.get_episode(e.id) for e in episodes]
        return episodes

    def weigh(self, batch: EpisodeBatch) -> EpisodeBatch:
        """``batch`` with the importance clip the losses apply (none when importance weighting is off)."""
        return batch if self.config.importance == "none" else dataclasses.replace(batch, importance_clip=self.config.importance_clip)


def _describe(config: ReplayConfig) -> str:
    fields = {
        k: v
        for k, v in dataclasses.asdict(config).items()
        if k in ("runs", "suites", "success", "teacher", "since", "until") and v not in (None, ())
    }
    return ", ".join(f"{k}={v}" for k, v in fields.items()) or "no filter"
