"""What viewers ask of the store: finer filters, pages cut by key, bounded counts, step ranges, aggregates, read-only opening."""

from __future__ import annotations

import dataclasses
import hashlib
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from alembic import command
from trajectory_factories import make_episode

from opd.errors import NotAStoreError, StoreError, StoreNotFoundError
from opd.trajectories import EpisodeFilter, Run, TrajectoryStore
from opd.trajectories.database import _config


def with_outcome(episode, *, reward: float, error_kind: str | None = None, text: str | None = None):
    """The episode with another reward, optionally an error on its last step and another final answer."""
    last = dataclasses.replace(episode.steps[-1], error_kind=error_kind, action=text or episode.steps[-1].action)
    return dataclasses.replace(episode, reward=reward, success=reward > 0.5, steps=(*episode.steps[:-1], last))


def test_reward_error_and_text_filters(store: TrajectoryStore, rng, run) -> None:
    episodes = [
        with_outcome(make_episode(rng, run), reward=0.0, error_kind="parse_error"),
        with_outcome(make_episode(rng, run), reward=0.5, text="The answer is 100% BLUE_widget"),
        with_outcome(make_episode(rng, run), reward=1.0),
        dataclasses.replace(make_episode(rng, run), termination="failed", failure_reason="sandbox died", reward=0.0, success=False),
    ]
    store.write_episodes(episodes)

    def ids(**fields) -> set[str]:
        return {s.id for s in store.list_episodes(EpisodeFilter(**fields))}

    assert ids(min_reward=0.5) == {episodes[1].id, episodes[2].id}
    assert ids(min_reward=0.1, max_reward=0.6) == {episodes[1].id}
    assert ids(has_errors=True) == {episodes[0].id, episodes[3].id}  # a step's error kind, or a failed episode
    assert ids(has_errors=False) == {episodes[1].id, episodes[2].id}
    assert ids(text="blue_WIDGET") == {episodes[1].id}  # case-insensitive, in the final answer
    assert ids(text="%") == ids(text="e_w") == {episodes[1].id}  # LIKE wildcards match themselves
    assert ids(text="compute 1 + 2") == {e.id for e in episodes}  # the task prompt
    assert ids(text=episodes[2].task_id) == {episodes[2].id}
    assert ids(text="nowhere") == set()


def test_pages_cut_by_key_cover_every_episode_once(store: TrajectoryStore, rng, run) -> None:
    written = [make_episode(rng, run, steps=1, annotated=False) for _ in range(23)]
    store.write_episodes(written)
    newest_first = [e.id for e in reversed(written)]
    pages, cursor = [], None
    while page := store.list_episodes(limit=5, before=cursor):
        pages.append([s.id for s in page])
        cursor = page[-1].id
    assert [i for page in pages for i in page] == newest_first and len(pages) == 5
    back = store.list_episodes(limit=5, after=pages[2][0])  # the page before the third, newest first
    assert [s.id for s in back] == pages[1]
    assert store.list_episodes(limit=5, before="no-such-id") == []


def test_bounded_count(store: TrajectoryStore, rng, run) -> None:
    store.write_episodes([make_episode(rng, run, steps=1, annotated=False) for _ in range(7)])
    assert store.count_episodes() == 7
    assert store.count_episodes(at_most=3) == 3
    assert store.count_episodes(at_most=100) == 7


def test_a_range_of_steps_with_its_annotations(store: TrajectoryStore, rng, run) -> None:
    episode = make_episode(rng, run, steps=6)
    store.write_episode(episode)
    steps, annotations = store.get_steps(episode.id, 2, 5)
    assert steps == list(episode.steps[2:5])
    assert annotations.token_logprobs == episode.annotations.token_logprobs[2:5]
    assert annotations.critiques == () and annotations.episode_scores == ()  # the critique is on step 0
    steps, annotations = store.get_steps(episode.id)
    assert len(steps) == 6 and annotations.critiques == episode.annotations.critiques
    assert store.get_steps("no-such-id") == ([], annotations.__class__())


def test_stats_suites_and_outcomes(store: TrajectoryStore, rng, run) -> None:
    other = store.add_run(Run(name="other"))
    store.write_episodes(
        [make_episode(rng, run, success=True), make_episode(rng, run, success=False), make_episode(rng, other, suite="inventory")]
    )
    stats = {(s.run_id, s.suite): s for s in store.episode_stats()}
    mine = stats[(run.id, "calculator")]
    assert (mine.episodes, mine.successes, mine.failed, mine.mean_reward, mine.mean_steps) == (2, 1, 0, 0.5, 3.0)
    assert mine.tokens == 2 * 3 * 20 and stats[(other.id, "inventory")].episodes == 1
    assert store.suites() == ["calculator", "inventory"]
    assert [o.success for o in store.outcomes(run.id)] == [True, False]


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_read_only_store_reads_and_cannot_write(tmp_path: Path, rng) -> None:
    path = tmp_path / "store.db"
    with TrajectoryStore(path) as store:
        run = store.add_run(Run(name="ro"))
        store.write_episode(make_episode(rng, run))
    before = file_digest(path)
    with TrajectoryStore(path, read_only=True) as store:
        assert store.count_episodes() == 1
        with pytest.raises(sa.exc.OperationalError, match="readonly"):
            store.add_run(Run(name="no"))
    assert file_digest(path) == before


def test_read_only_refuses_what_it_cannot_read(tmp_path: Path) -> None:
    with pytest.raises(StoreNotFoundError, match="No trajectory store"):
        TrajectoryStore(tmp_path / "missing.db", read_only=True)
    assert not (tmp_path / "missing.db").exists()
    empty = tmp_path / "empty.db"
    empty.touch()
    with pytest.raises(NotAStoreError, match="is empty"):
        TrajectoryStore(empty, read_only=True)
    assert empty.read_bytes() == b""


def test_read_only_refuses_an_old_schema_instead_of_migrating(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    engine = sa.create_engine(f"sqlite:///{path}")
    with engine.begin() as connection:
        config = _config()
        config.attributes["connection"] = connection
        command.upgrade(config, "0001")
    engine.dispose()
    before = file_digest(path)
    with pytest.raises(StoreError, match="older schema '0001'.*opd episodes list --store"):
        TrajectoryStore(path, read_only=True)
    assert file_digest(path) == before
    with sqlite3.connect(path) as raw:
        assert raw.execute("SELECT version_num FROM alembic_version").fetchall() == [("0001",)]


@pytest.mark.postgres
def test_read_only_on_postgres(postgres_url: str) -> None:
    engine = sa.create_engine(postgres_url)
    with engine.begin() as connection:  # start from nothing, as the other PostgreSQL tests do
        connection.execute(sa.text("DROP SCHEMA public CASCADE"))
        connection.execute(sa.text("CREATE SCHEMA public"))
    engine.dispose()
    with TrajectoryStore(postgres_url) as store:
        run = store.add_run(Run(name="pg"))
        store.write_episode(make_episode(np.random.default_rng(0), run))
    with TrajectoryStore(postgres_url, read_only=True) as store:
        assert store.count_episodes(EpisodeFilter(text="compute")) == 1
        with pytest.raises(sa.exc.InternalError, match="read-only transaction"):
            store.add_run(Run(name="no"))


def test_teacher_run_suite_and_date_filters(store: TrajectoryStore, rng, run) -> None:
    """What `opd annotate` and training from the store select by: who annotated, which runs and suites, when."""
    other = store.add_run(Run(name="other"))
    old = dataclasses.replace(make_episode(rng, run), created_at=datetime(2025, 1, 1, tzinfo=UTC))
    plain = make_episode(rng, other, suite="inventory", annotated=False)
    store.write_episodes([old, plain])

    def ids(**fields) -> set[str]:
        return set(store.episode_ids(EpisodeFilter(**fields)))

    assert ids(annotated_by="critic") == ids(annotated_by="teacher") == {old.id}  # a critique or token log-probs by that name
    assert ids(not_annotated_by="teacher") == {plain.id} and ids(annotated_by="nobody") == set()
    assert ids(run_ids=(run.id, other.id)) == {old.id, plain.id} and ids(run_ids=(other.id,)) == {plain.id}
    assert ids(suites=("inventory", "files")) == {plain.id}
    assert ids(created_before=datetime(2025, 6, 1)) == {old.id}  # a naive bound reads as UTC
    assert ids(created_after=datetime(2025, 6, 1, tzinfo=UTC)) == {plain.id}
    assert store.episode_ids() == [old.id, plain.id]  # oldest first
    assert store.tokenizers() == [("tiny-tokenizer", "abc123")]
