from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import numpy as np
import pytest
import sqlalchemy as sa
from trajectory_factories import make_episode

from opd.trajectories import Run, TrajectoryStore


@pytest.fixture
def store():
    """An in-memory SQLite store: the unit-test default."""
    with TrajectoryStore("sqlite://") as trajectories:
        yield trajectories


@pytest.fixture
def file_store(tmp_path):
    with TrajectoryStore(tmp_path / "store.db") as trajectories:
        yield trajectories


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture
def run(store: TrajectoryStore) -> Run:
    return store.add_run(Run(name="test", config={"lr": 1e-3, "suite": "calculator"}, code_version="0.1.0"))


@pytest.fixture
def episode(rng, run):
    return make_episode(rng, run)


@pytest.fixture
def postgres_url() -> str:
    """The test server's URL; CI sets it (scripts/ensure-postgres.sh). Without it, fail in CI, skip elsewhere."""
    url = os.environ.get("OPD_TEST_POSTGRES_URL")
    if not url:
        if os.environ.get("CI"):
            pytest.fail("OPD_TEST_POSTGRES_URL is not set in CI: scripts/ensure-postgres.sh did not run or failed.")
        pytest.skip("set OPD_TEST_POSTGRES_URL (or run `make test`, which starts a server) to run PostgreSQL tests")
    return url


@pytest.fixture
def fresh_postgres_url(postgres_url: str) -> Iterator[str]:
    """A database of its own on the test server, dropped afterwards (other tests and sessions share opd_test)."""
    server = sa.engine.make_url(postgres_url)
    name = f"opd_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(server.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f"CREATE DATABASE {name}"))
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()
