"""The same store on a real PostgreSQL server (started by scripts/ensure-postgres.sh in `make test`)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from trajectory_factories import make_episode

from opd.errors import NotAStoreError
from opd.trajectories import EpisodeFilter, Run, TrajectoryStore
from opd.trajectories.schema import metadata

pytestmark = pytest.mark.postgres
WORKER = Path(__file__).with_name("store_worker.py")


@pytest.fixture
def url(postgres_url: str) -> str:
    """The test database, emptied first so every test starts from nothing."""
    url = postgres_url
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.execute(sa.text("DROP SCHEMA public CASCADE"))
        connection.execute(sa.text("CREATE SCHEMA public"))
    engine.dispose()
    return url


def test_round_trip_filters_and_batches(url: str) -> None:
    rng = np.random.default_rng(0)
    with TrajectoryStore(url) as store:
        run = store.add_run(Run(name="pg", config={"x": [1, 2]}))
        written = [make_episode(rng, run, success=i % 2 == 0, annotated=i % 3 == 0) for i in range(10)]
        store.write_episodes(written[:5])
        for episode in written[5:]:
            store.write_episode(episode)
        assert store.get_episode(written[3].id) == written[3]
        assert store.count_episodes(EpisodeFilter(success=True)) == 5
        assert store.count_episodes(EpisodeFilter(has_annotation="token_logprobs")) == 4
        assert [e.id for b in store.iter_episodes(batch_size=3) for e in b] == [e.id for e in written]
        assert store.get_run(run.id) == run


def test_migrations_match_the_models_on_postgres(url: str) -> None:
    TrajectoryStore(url).close()
    engine = sa.create_engine(url)
    with engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection, opts={"compare_type": True}), metadata) == []
    engine.dispose()


def test_a_foreign_postgres_database_is_refused(url: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.execute(sa.text("CREATE TABLE customers (id serial PRIMARY KEY)"))
    engine.dispose()
    with pytest.raises(NotAStoreError, match="customers"):
        TrajectoryStore(url)


def writer(url: str, *, seed: int, count: int) -> subprocess.Popen[str]:
    command = [sys.executable, str(WORKER), "write", url, str(seed), str(count)]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_writers_in_two_processes_and_a_killed_one(url: str) -> None:
    TrajectoryStore(url).close()
    steady = subprocess.Popen(
        [sys.executable, str(WORKER), "write", url, "1", "200"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    doomed = subprocess.Popen(
        [sys.executable, str(WORKER), "write", url, "2", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert doomed.stdout is not None and doomed.stdout.readline().strip() == "ready"
    time.sleep(1.5)
    doomed.send_signal(signal.SIGKILL)
    doomed.wait()
    _, err = steady.communicate(timeout=300)
    assert steady.returncode == 0, err
    with TrajectoryStore(url) as store, store._engines.read.connect() as connection:
        partial = connection.execute(
            sa.text("SELECT COUNT(*) FROM episodes e WHERE e.num_steps != (SELECT COUNT(*) FROM steps s WHERE s.episode_id = e.id)")
        ).scalar_one()
        assert partial == 0
        assert store.count_episodes(EpisodeFilter(run_id=f"{1:032d}")) == 200
        assert store.count_episodes(EpisodeFilter(run_id=f"{2:032d}")) > 0
