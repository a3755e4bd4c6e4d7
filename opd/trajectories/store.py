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
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from opd.errors import ConfigError, NotInStoreError
from opd.trajectories import ANNOTATION_KINDS, convert
from opd.trajectories.bulk import BulkInsert
from opd.trajectories.database import open_engines
from opd.trajectories.records import Annotations, Episode, Run, Step, critique_ledger
from opd.trajectories.schema import CritiqueRow, EpisodeRow, EpisodeScoreRow, RunRow, StepRouteRow, StepRow, TokenLogprobsRow

__all__ = ["ANNOTATION_KINDS", "EpisodeFilter", "EpisodeStats", "EpisodeSummary", "Outcome", "TrajectoryStore"]

logger = logging.getLogger(__name__)

_EPISODES = EpisodeRow.__table__
_STEPS = StepRow.__table__
_RUNS = RunRow.__table__
_ANNOTATION_TABLES = {
    "token_logprobs": TokenLogprobsRow.__table__,
    "critiques": CritiqueRow.__table__,
    "episode_scores": EpisodeScoreRow.__table__,
    "step_routes": StepRouteRow.__table__,
}
assert tuple(_ANNOTATION_TABLES) == ANNOTATION_KINDS, "opd/trajectories/__init__.py names the annotation tables"
_STEP_READERS = {  # the annotations that belong to a step
    "token_logprobs": convert.token_logprobs_from_row,
    "critiques": convert.critique_from_row,
    "step_routes": convert.step_route_from_row,
}


@dataclasses.dataclass(frozen=True)
class EpisodeFilter:
    """Which episodes to read. Every field left as None matches everything."""

    run_id: str | None = None
    suite: str | None = None
    success: bool | None = None
    has_annotation: str | None = None  # one of ANNOTATION_KINDS
    teacher: str | None = None  # with has_annotation: only that teacher's annotations count
    task_id: str | None = None
    episode_id: str | None = None  # the full id
    min_reward: float | None = None  # inclusive
    max_reward: float | None = None  # inclusive
    has_errors: bool | None = None  # an error: a step with an error kind, or the episode failed
    # A case-insensitive substring of the task id, the initial messages (system and task prompt) or any step's
    # action or observation (so the final answer too). A LIKE scan: bound it with a limit on large stores.
    text: str | None = None
    annotated_by: str | None = None  # some annotation (of any kind) by this teacher
    not_annotated_by: str | None = None  # no annotation of any kind by this teacher: what is left for it to score
    run_ids: tuple[str, ...] = ()  # any of these runs (empty: any run)
    suites: tuple[str, ...] = ()  # any of these suites (empty: any suite)
    created_after: datetime | None = None  # inclusive
    created_before: datetime | None = None  # exclusive
    parent_id: str | None = None  # only the branches of this episode (its full id)

    def __post_init__(self) -> None:
        if self.has_annotation is not None and self.has_annotation not in _ANNOTATION_TABLES:
            raise ConfigError(f"has_annotation must be one of {list(ANNOTATION_KINDS)}, got {self.has_annotation!r}.")
        if self.teacher is not None and self.has_annotation is None:
            raise ConfigError("teacher= filters annotations; give has_annotation= as well.")

    def where(self) -> list[sa.ColumnElement[bool]]:
        clauses = []
        for field, column in (
            ("run_id", "run_id"),
            ("suite", "suite"),
            ("success", "success"),
            ("task_id", "task_id"),
            ("episode_id", "id"),
            ("parent_id", "parent_id"),
        ):
            if (value := getattr(self, field)) is not None:
                clauses.append(_EPISODES.c[column] == value)
        if self.has_annotation is not None:
            table = _ANNOTATION_TABLES[self.has_annotation]
            match = table.c.episode_id == _EPISODES.c.id
            if self.teacher is not None:
                match = sa.and_(match, table.c.teacher == self.teacher)
            clauses.append(sa.exists().where(match))
        if self.annotated_by is not None:
            clauses.append(_annotated_by(self.annotated_by))
        if self.not_annotated_by is not None:
            clauses.append(sa.not_(_annotated_by(self.not_annotated_by)))
        for values, column in ((self.run_ids, _EPISODES.c.run_id), (self.suites, _EPISODES.c.suite)):
            if values:
                clauses.append(column.in_(list(values)))
        if self.created_after is not None:
            clauses.append(_EPISODES.c.created_at >= _utc(self.created_after))
        if self.created_before is not None:
            clauses.append(_EPISODES.c.created_at < _utc(self.created_before))
        if self.min_reward is not None:
            clauses.append(_EPISODES.c.reward >= self.min_reward)
        if self.max_reward is not None:
            clauses.append(_EPISODES.c.reward <= self.max_reward)
        if self.has_errors is not None:
            step_error = sa.exists().where(_STEPS.c.episode_id == _EPISODES.c.id, _STEPS.c.error_kind.is_not(None))
            errored = sa.or_(_EPISODES.c.termination == "failed", step_error)
            clauses.append(errored if self.has_errors else sa.not_(errored))
        if self.text:
            step_text = sa.or_(_contains(_STEPS.c.action, self.text), _contains(_STEPS.c.observation, self.text))
            in_steps = sa.exists().where(_STEPS.c.episode_id == _EPISODES.c.id, step_text)
            task = sa.or_(_contains(_EPISODES.c.task_id, self.text), _contains(sa.cast(_EPISODES.c.initial_messages, sa.Text), self.text))
            clauses.append(sa.or_(task, in_steps))
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
    tokenizer: str
    created_at: Any
    parent_id: str | None = None  # set on a branch: the episode it branched from
    branch_step: int | None = None  # and the step it branched at


@dataclasses.dataclass(frozen=True)
class EpisodeStats:
    """Aggregates over the episodes of one run on one suite."""

    run_id: str
    suite: str
    episodes: int
    successes: int
    failed: int  # episodes that ended in an infrastructure failure
    mean_reward: float
    mean_steps: float
    tokens: int


@dataclasses.dataclass(frozen=True)
class Outcome:
    """How one episode ended, without anything else: what run comparisons need."""

    task_id: str
    seed: int | None
    success: bool
    reward: float


class TrajectoryStore:
    """The trajectory store at ``location``: a path (SQLite) or a SQLAlchemy URL (``postgresql+psycopg://...``).

    ``create=False`` refuses to create a new SQLite file, for readers that
    expect an existing store. ``read_only=True`` opens an existing store so
    that the database itself refuses writes (SQLite ``mode=ro``, PostgreSQL
    read-only transactions) and migrates nothing: for viewers.
    """

    def __init__(
        self, location: str | Path = "sqlite://", *, create: bool = True, read_only: bool = False, busy_timeout_s: float = 60.0
    ) -> None:
        self._engines = open_engines(location, create=create and not read_only, read_only=read_only, busy_timeout_s=busy_timeout_s)
        self.url = self._engines.url
        dialect = self._engines.write.dialect
        self._inserts = {table.name: BulkInsert.compile(table, dialect) for table in (_EPISODES, _STEPS, *_ANNOTATION_TABLES.values())}

    def __repr__(self) -> str:
        return f"TrajectoryStore({sa.make_url(self._engines.url).render_as_string(hide_password=True)!r})"

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
                raise NotInStoreError(f"No episode {episode_id!r} in {self!r}.")
            steps = _steps(connection, [episode_id]).get(episode_id, [])
            for kind, rows in _annotation_rows(episode_id, annotations, steps).items():
                self._inserts[kind].run(connection, rows)

    # Reading -----------------------------------------------------------------

    def get_run(self, run_id: str) -> Run:
        with self._engines.read.connect() as connection:
            row = connection.execute(sa.select(_RUNS).where(_RUNS.c.id == run_id)).mappings().first()
        if row is None:
            raise NotInStoreError(f"No run {run_id!r} in {self!r}.")
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
                raise NotInStoreError(f"No episode {episode_id!r} in {self!r}.")
            if len(rows) > 1:
                raise NotInStoreError(f"Episode id prefix {episode_id!r} is ambiguous; give more characters.")
            return _load_episodes(connection, rows)[0]

    def has_episode(self, episode_id: str) -> bool:
        with self._engines.read.connect() as connection:
            return connection.execute(sa.select(_EPISODES.c.pk).where(_EPISODES.c.id == episode_id)).first() is not None

    def episode_ids(self, where: EpisodeFilter = EpisodeFilter()) -> list[str]:
        """The ids of matching episodes, oldest first (a fixed pool to draw from; ids only, so cheap on large stores)."""
        query = sa.select(_EPISODES.c.id).where(*where.where()).order_by(_EPISODES.c.pk)
        with self._engines.read.connect() as connection:
            return list(connection.execute(query).scalars())

    def tokenizers(self, where: EpisodeFilter = EpisodeFilter()) -> list[tuple[str, str]]:
        """The distinct (tokenizer, chat template hash) the matching episodes were written with."""
        columns = (_EPISODES.c.tokenizer, _EPISODES.c.chat_template_hash)
        with self._engines.read.connect() as connection:
            return [tuple(r) for r in connection.execute(sa.select(*columns).where(*where.where()).distinct().order_by(*columns))]

    def count_episodes(self, where: EpisodeFilter = EpisodeFilter(), *, at_most: int | None = None) -> int:
        """How many episodes match; with ``at_most``, counting stops there (a bounded cost on large stores)."""
        matching = sa.select(sa.literal(1)).select_from(_EPISODES).where(*where.where())
        if at_most is not None:
            matching = matching.limit(at_most)
        with self._engines.read.connect() as connection:
            return connection.execute(sa.select(sa.func.count()).select_from(matching.subquery())).scalar_one()

    def critique_usage(self, where: EpisodeFilter = EpisodeFilter()) -> dict[str, float | None]:
        """The cost ledger of the critiques on matching episodes: steps graded, unannotated, calls, tokens, dollars."""
        critiques = _ANNOTATION_TABLES["critiques"]
        query = (
            sa.select(critiques.c.usage, critiques.c.score).join(_EPISODES, _EPISODES.c.id == critiques.c.episode_id).where(*where.where())
        )
        with self._engines.read.connect() as connection:
            rows = connection.execute(query).all()
        return critique_ledger(rows)

    def list_episodes(
        self,
        where: EpisodeFilter = EpisodeFilter(),
        *,
        limit: int = 50,
        offset: int = 0,
        before: str | None = None,
        after: str | None = None,
    ) -> list[EpisodeSummary]:
        """Episode headers, newest first, without loading steps.

        ``before``/``after`` (an episode id) page by key: only episodes written
        before (after) that one, a cost independent of how deep the page is.
        """
        columns = [_EPISODES.c[f.name] for f in dataclasses.fields(EpisodeSummary)]
        query = sa.select(*columns).where(*where.where())
        if before is not None:
            query = query.where(_EPISODES.c.pk < _pk_of(before))
        if after is not None:  # the oldest `limit` newer episodes, turned back to newest first below
            query = query.where(_EPISODES.c.pk > _pk_of(after)).order_by(_EPISODES.c.pk)
        else:
            query = query.order_by(_EPISODES.c.pk.desc())
        with self._engines.read.connect() as connection:
            rows = connection.execute(query.limit(limit).offset(offset)).mappings().all()
        summaries = [EpisodeSummary(**{**r, "created_at": convert.aware(r["created_at"])}) for r in rows]
        return summaries[::-1] if after is not None else summaries

    def get_steps(self, episode_id: str, start: int = 0, stop: int | None = None) -> tuple[list[Step], Annotations]:
        """Steps ``start`` to ``stop - 1`` of an episode (its full id), with their token annotations and critiques.

        A long episode can so be read a piece at a time; episode scores belong to no step and are left out.
        """
        in_range = [_STEPS.c.episode_id == episode_id, _STEPS.c.index >= start]
        if stop is not None:
            in_range.append(_STEPS.c.index < stop)
        with self._engines.read.connect() as connection:
            rows = connection.execute(sa.select(_STEPS).where(*in_range).order_by(_STEPS.c.index)).mappings()
            steps = [convert.step_from_row(r) for r in rows]
            annotations = {}
            for kind, read in _STEP_READERS.items():
                table = _ANNOTATION_TABLES[kind]
                steps_of = [table.c.episode_id == episode_id, table.c.step_index >= start]
                if stop is not None:
                    steps_of.append(table.c.step_index < stop)
                annotations[kind] = tuple(read(r) for r in connection.execute(sa.select(table).where(*steps_of)).mappings())
        return steps, convert.sort_annotations(
            Annotations(token_logprobs=annotations["token_logprobs"], critiques=annotations["critiques"], routes=annotations["step_routes"])
        )

    def episode_stats(self) -> list[EpisodeStats]:
        """Counts and means per (run, suite), in one grouped scan of the episode headers."""
        e = _EPISODES.c
        query = sa.select(
            e.run_id,
            e.suite,
            sa.func.count(),
            sa.func.sum(sa.cast(e.success, sa.Integer)),
            sa.func.sum(sa.cast(e.termination == "failed", sa.Integer)),
            sa.func.avg(e.reward),
            sa.func.avg(e.num_steps),
            sa.func.sum(e.num_tokens),
        ).group_by(e.run_id, e.suite)
        with self._engines.read.connect() as connection:
            rows = connection.execute(query.order_by(e.run_id, e.suite)).all()
        return [EpisodeStats(r[0], r[1], r[2], int(r[3]), int(r[4]), float(r[5]), float(r[6]), int(r[7])) for r in rows]

    def suites(self) -> list[str]:
        """The suites that have episodes in the store."""
        with self._engines.read.connect() as connection:
            return list(connection.execute(sa.select(_EPISODES.c.suite).distinct().order_by(_EPISODES.c.suite)).scalars())

    def outcomes(self, run_id: str) -> list[Outcome]:
        """How each episode of a run ended, oldest first."""
        e = _EPISODES.c
        query = sa.select(e.task_id, e.seed, e.success, e.reward).where(e.run_id == run_id).order_by(e.pk)
        with self._engines.read.connect() as connection:
            return [Outcome(*row) for row in connection.execute(query)]

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
    for a in (*annotations.token_logprobs, *annotations.critiques, *annotations.routes):
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


def _utc(moment: datetime) -> datetime:
    """Stored times are UTC; a naive bound is read as UTC too."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _annotated_by(teacher: str) -> sa.ColumnElement[bool]:
    """Whether the episode has any annotation, of any kind, by ``teacher``."""
    return sa.or_(*(sa.exists().where(t.c.episode_id == _EPISODES.c.id, t.c.teacher == teacher) for t in _ANNOTATION_TABLES.values()))


def _contains(column: sa.ColumnElement[Any], text: str) -> sa.ColumnElement[bool]:
    """Case-insensitive substring match; LIKE's wildcards in ``text`` match themselves."""
    return column.icontains(text, autoescape=True)


def _pk_of(episode_id: str) -> sa.ScalarSelect[Any]:
    """The insertion position of an episode: the key that pages are cut at."""
    return sa.select(_EPISODES.c.pk).where(_EPISODES.c.id == episode_id).scalar_subquery()


def _steps(connection: sa.Connection, episode_ids: list[str]) -> dict[str, list[Step]]:
    found: dict[str, list[Step]] = {i: [] for i in episode_ids}
    for row in connection.execute(sa.select(_STEPS).where(_STEPS.c.episode_id.in_(episode_ids))).mappings():
        found[row["episode_id"]].append(convert.step_from_row(row))
    return found


def _load_episodes(connection: sa.Connection, rows: Sequence[Any]) -> list[Episode]:
    ids = [r["id"] for r in rows]
    steps = _steps(connection, ids)
    found: dict[str, dict[str, list[Any]]] = {i: {k: [] for k in _ANNOTATION_TABLES} for i in ids}
    readers = {**_STEP_READERS, "episode_scores": convert.episode_score_from_row}
    for kind, table in _ANNOTATION_TABLES.items():
        for row in connection.execute(sa.select(table).where(table.c.episode_id.in_(ids))).mappings():
            found[row["episode_id"]][kind].append(readers[kind](row))
    episodes = []
    for row in rows:
        a = found[row["id"]]
        annotations = convert.sort_annotations(
            Annotations(tuple(a["token_logprobs"]), tuple(a["critiques"]), tuple(a["episode_scores"]), tuple(a["step_routes"]))
        )
        episodes.append(convert.episode_from_row(row, steps[row["id"]], annotations))
    return episodes
