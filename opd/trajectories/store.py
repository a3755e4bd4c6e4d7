"""``TrajectoryStore``: every episode and every teacher annotation, in SQLite or PostgreSQL.

Writes are atomic per call: an episode with all its steps and annotations is
in the store entirely or not at all, even if the writing process is killed.
Reads stream in batches with keyset pagination, so iterating a store of any
size holds one batch in memory. Records go in and come out; rows never leave.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from opd.errors import ConfigError
from opd.trajectories import convert
from opd.trajectories.bulk import BulkInsert
from opd.trajectories.database import open_engines
from opd.trajectories.records import Annotations, Episode, Run, Step, sum_usage
from opd.trajectories.schema import CritiqueRow, EpisodeRow, EpisodeScoreRow, RunRow, StepRow, TokenLogprobsRow

__all__ = ["ANNOTATION_KINDS", "EpisodeFilter", "EpisodeSummary", "TrajectoryStore"]

logger = logging.getLogger(__name__)

_EPISODES = EpisodeRow.__table__
_STEPS = StepRow.__table__
_RUNS = RunRow.__table__
_ANNOTATION_TABLES = {
    "token_logprobs": TokenLogprobsRow.__table__,
    "critiques": CritiqueRow.__table__,
    "episode_scores": EpisodeScoreRow.__table__,
}
ANNOTATION_KINDS = tuple(_ANNOTATION_TABLES)


@dataclasses.dataclass(frozen=True)
class EpisodeFilter:
    """Which episodes to read. Every field left as None matches everything."""

    run_id: str | None = None
    suite: str | None = None
    success: bool | None = None
    has_annotation: str | None = None  # one of ANNOTATION_KINDS
    teacher: str | None = None  # with has_annotation: only that teacher's annotations count
    task_id: str | None = None

    def __post_init__(self) -> None:
        if self.has_annotation is not None and self.has_annotation not in _ANNOTATION_TABLES:
            raise ConfigError(f"has_annotation must be one of {list(ANNOTATION_KINDS)}, got {self.has_annotation!r}.")
        if self.teacher is not None and self.has_annotation is None:
            raise ConfigError("teacher= filters annotations; give has_annotation= as well.")

    def where(self) -> list[sa.ColumnElement[bool]]:
        clauses = []
        for column in ("run_id", "suite", "success", "task_id"):
            if (value := getattr(self, column)) is not None:
                clauses.append(_EPISODES.c[column] == value)
        if self.has_annotation is not None:
            table = _ANNOTATION_TABLES[self.has_annotation]
            match = table.c.episode_id == _EPISODES.c.id
            if self.teacher is not None:
                match = sa.and_(match, table.c.teacher == self.teacher)
            clauses.append(sa.exists().where(match))
        return clauses


@dataclasses.dataclass(frozen=True)
class EpisodeSummary:
    """An episode's header without its steps: what listings show."""

    id: str
    run_id: str
    suite: str
    task_id: str
    seed: int | None
    reward: float
    success: bool
    termination: str
    num_steps: int
    num_tokens: int
    policy_model: str
    created_at: Any


class TrajectoryStore:
    """The trajectory store at ``location``: a path (SQLite) or a SQLAlchemy URL (``postgresql+psycopg://...``).

    ``create=False`` refuses to create a new SQLite file, for readers that
    expect an existing store.
    """

    def __init__(self, location: str | Path = "sqlite://", *, create: bool = True, busy_timeout_s: float = 60.0) -> None:
        self._engines = open_engines(location, create=create, busy_timeout_s=busy_timeout_s)
        self.url = self._engines.url
        dialect = self._engines.write.dialect
        self._inserts = {table.name: BulkInsert.compile(table, dialect) for table in (_EPISODES, _STEPS, *_ANNOTATION_TABLES.values())}

    def __repr__(self) -> str:
        return f"TrajectoryStore({self._engines.write.url.render_as_string(hide_password=True)!r})"

    def close(self) -> None:
        self._engines.dispose()

    def __enter__(self) -> TrajectoryStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # Writing -----------------------------------------------------------------

    def add_run(self, run: Run) -> Run:
        """Record a run; adding the same run twice is a no-op."""
        with self._engines.write.begin() as connection:
            exists = connection.execute(sa.select(_RUNS.c.id).where(_RUNS.c.id == run.id)).first()
            if exists is None:
                connection.execute(_RUNS.insert(), [convert.run_to_row(run)])
        return run

    def write_episode(self, episode: Episode) -> None:
        """Write one episode with its steps and annotations, all or nothing."""
        self.write_episodes([episode])

    def write_episodes(self, episodes: Sequence[Episode]) -> None:
        """Write several episodes in one transaction (faster; still all or nothing)."""
        if not episodes:
            return
        rows: dict[str, list[dict[str, Any]]] = {"episodes": [], "steps": [], **{kind: [] for kind in _ANNOTATION_TABLES}}
        for episode in episodes:  # encode and check everything before taking the write lock
            rows["episodes"].append(convert.episode_to_row(episode))
            rows["steps"].extend(convert.step_to_row(episode.id, s) for s in episode.steps)
            for kind, annotation_rows in _annotation_rows(episode.id, episode.annotations, episode.steps).items():
                rows[kind].extend(annotation_rows)
        with self._engines.write.begin() as connection:
            for table, table_rows in rows.items():
                self._inserts[table].run(connection, table_rows)

    def add_annotations(self, episode_id: str, annotations: Annotations) -> None:
        """Attach annotations to a stored episode, all or nothing.

        Annotations from another teacher sit beside the existing ones; the same
        (step, teacher) twice is an error rather than a silent overwrite.
        """
        with self._engines.write.begin() as connection:
            row = connection.execute(sa.select(_EPISODES.c.num_steps).where(_EPISODES.c.id == episode_id)).first()
            if row is None:
                raise KeyError(f"No episode {episode_id!r} in {self!r}.")
            steps = _steps(connection, [episode_id]).get(episode_id, [])
            for kind, rows in _annotation_rows(episode_id, annotations, steps).items():
                self._inserts[kind].run(connection, rows)

    # Reading -----------------------------------------------------------------

    def get_run(self, run_id: str) -> Run:
        with self._engines.read.connect() as connection:
            row = connection.execute(sa.select(_RUNS).where(_RUNS.c.id == run_id)).mappings().first()
        if row is None:
            raise KeyError(f"No run {run_id!r} in {self!r}.")
        return convert.run_from_row(row)

    def runs(self) -> list[Run]:
        with self._engines.read.connect() as connection:
            rows = connection.execute(sa.select(_RUNS).order_by(_RUNS.c.created_at)).mappings().all()
        return [convert.run_from_row(r) for r in rows]

    def get_episode(self, episode_id: str) -> Episode:
        """The episode with this id, or with this unique id prefix (as the CLI shows ids shortened)."""
        with self._engines.read.connect() as connection:
            rows = (
                connection.execute(sa.select(_EPISODES).where(_EPISODES.c.id.startswith(episode_id, autoescape=True)).limit(2))
                .mappings()
                .all()
            )
            if not rows:
                raise KeyError(f"No episode {episode_id!r} in {self!r}.")
            if len(rows) > 1:
                raise KeyError(f"Episode id prefix {episode_id!r} is ambiguous; give more characters.")
            return _load_episodes(connection, rows)[0]

    def has_episode(self, episode_id: str) -> bool:
        with self._engines.read.connect() as connection:
            return connection.execute(sa.select(_EPISODES.c.pk).where(_EPISODES.c.id == episode_id)).first() is not None

    def count_episodes(self, where: EpisodeFilter = EpisodeFilter()) -> int:
        with self._engines.read.connect() as connection:
            return connection.execute(sa.select(sa.func.count()).select_from(_EPISODES).where(*where.where())).scalar_one()

    def critique_usage(self, where: EpisodeFilter = EpisodeFilter()) -> dict[str, float | None]:
        """The cost ledger of the critiques on matching episodes: steps graded, unannotated, calls, tokens, dollars."""
        critiques = _ANNOTATION_TABLES["critiques"]
        query = (
            sa.select(critiques.c.usage, critiques.c.score).join(_EPISODES, _EPISODES.c.id == critiques.c.episode_id).where(*where.where())
        )
        with self._engines.read.connect() as connection:
            rows = connection.execute(query).all()
        return {"steps": len(rows), "unannotated": sum(r.score is None for r in rows), **sum_usage(r.usage for r in rows)}

    def list_episodes(self, where: EpisodeFilter = EpisodeFilter(), *, limit: int = 50, offset: int = 0) -> list[EpisodeSummary]:
        """Episode headers, newest first, without loading steps."""
        columns = [_EPISODES.c[f.name] for f in dataclasses.fields(EpisodeSummary)]
        query = sa.select(*columns).where(*where.where()).order_by(_EPISODES.c.pk.desc()).limit(limit).offset(offset)
        with self._engines.read.connect() as connection:
            rows = connection.execute(query).mappings().all()
        return [EpisodeSummary(**{**r, "created_at": convert.aware(r["created_at"])}) for r in rows]

    def iter_episodes(self, where: EpisodeFilter = EpisodeFilter(), *, batch_size: int = 64) -> Iterator[list[Episode]]:
        """Matching episodes, oldest first, in batches of at most ``batch_size``; memory holds one batch."""
        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {batch_size}.")
        last_pk = 0
        while True:
            query = sa.select(_EPISODES).where(_EPISODES.c.pk > last_pk, *where.where()).order_by(_EPISODES.c.pk).limit(batch_size)
            with self._engines.read.connect() as connection:
                rows = connection.execute(query).mappings().all()
                if not rows:
                    return
                batch = _load_episodes(connection, rows)
            last_pk = rows[-1]["pk"]
            yield batch

    def iter_steps(self, where: EpisodeFilter = EpisodeFilter(), *, batch_size: int = 64) -> Iterator[list[tuple[Episode, Step]]]:
        """(episode, step) pairs of matching episodes, in batches of about ``batch_size`` steps."""
        pending: list[tuple[Episode, Step]] = []
        for episodes in self.iter_episodes(where, batch_size=max(1, batch_size // 4)):
            for episode in episodes:
                pending.extend((episode, step) for step in episode.steps)
            while len(pending) >= batch_size:
                yield pending[:batch_size]
                pending = pending[batch_size:]
        if pending:
            yield pending


def _annotation_rows(episode_id: str, annotations: Annotations, steps: Iterable[Step]) -> dict[str, list[dict[str, Any]]]:
    """Rows per annotation table, after checking each annotation fits the step it names."""
    steps = {s.index: s for s in steps}
    for a in (*annotations.token_logprobs, *annotations.critiques):
        if a.step_index not in steps:
            raise ConfigError(f"Annotation by {a.teacher!r} names step {a.step_index}, but episode {episode_id} has steps {sorted(steps)}.")
    for a in annotations.token_logprobs:
        expected = steps[a.step_index].num_policy_tokens
        if a.token_ids.shape[0] != expected:
            raise ConfigError(
                f"Token annotation by {a.teacher!r} for step {a.step_index} has {a.token_ids.shape[0]} rows; "
                f"the step has {expected} policy tokens."
            )
    return convert.annotation_rows(episode_id, annotations)


def _steps(connection: sa.Connection, episode_ids: list[str]) -> dict[str, list[Step]]:
    found: dict[str, list[Step]] = {i: [] for i in episode_ids}
    for row in connection.execute(sa.select(_STEPS).where(_STEPS.c.episode_id.in_(episode_ids))).mappings():
        found[row["episode_id"]].append(convert.step_from_row(row))
    return found


def _load_episodes(connection: sa.Connection, rows: Sequence[Any]) -> list[Episode]:
    ids = [r["id"] for r in rows]
    steps = _steps(connection, ids)
    found: dict[str, dict[str, list[Any]]] = {i: {k: [] for k in _ANNOTATION_TABLES} for i in ids}
    readers = {
        "token_logprobs": convert.token_logprobs_from_row,
        "critiques": convert.critique_from_row,
        "episode_scores": convert.episode_score_from_row,
    }
    for kind, table in _ANNOTATION_TABLES.items():
        for row in connection.execute(sa.select(table).where(table.c.episode_id.in_(ids))).mappings():
            found[row["episode_id"]][kind].append(readers[kind](row))
    episodes = []
    for row in rows:
        a = found[row["id"]]
        annotations = convert.sort_annotations(Annotations(tuple(a["token_logprobs"]), tuple(a["critiques"]), tuple(a["episode_scores"])))
        episodes.append(convert.episode_from_row(row, steps[row["id"]], annotations))
    return episodes
