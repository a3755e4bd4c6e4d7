"""The ranks of a training job share one PostgreSQL store: no id collides, a killed rank leaves nothing partial,
and every episode says which rank on which host wrote it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from opd.trajectories import EpisodeFilter, TrajectoryStore
from opd.trajectories.records import new_id

pytestmark = pytest.mark.postgres
WORKER = Path(__file__).with_name("store_worker.py")
PER_RANK = 150


def start_rank(url: str, run_id: str, rank: int) -> subprocess.Popen[str]:
    env = {**os.environ, "RANK": str(rank), "WORLD_SIZE": "2"}
    argv = [sys.executable, str(WORKER), "rank", url, run_id, str(PER_RANK)]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def wait_ready(process: subprocess.Popen[str]) -> None:
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line.strip() == "ready", line + (process.stderr.read() if process.stderr else "")


def partial_episodes(store: TrajectoryStore) -> int:
    """Episodes whose stored steps or annotations do not match the step count they declare."""
    with store._engines.read.connect() as connection:
        return connection.execute(
            sa.text(
                "SELECT COUNT(*) FROM episodes e WHERE e.num_steps != (SELECT COUNT(*) FROM steps s WHERE s.episode_id = e.id) "
                "OR (SELECT COUNT(*) FROM token_logprobs t WHERE t.episode_id = e.id) != e.num_steps"
            )
        ).scalar_one()


@pytest.mark.slow
def test_two_ranks_write_at_once_and_a_killed_rank_leaves_nothing_partial(fresh_postgres_url: str) -> None:
    run_id = new_id()
    # Both start on a database with no tables yet: they migrate it at the same moment, as a job's ranks do.
    ranks = [start_rank(fresh_postgres_url, run_id, rank) for rank in (0, 1)]
    for process in ranks:
        wait_ready(process)
    survivor, victim = ranks
    assert victim.stdout is not None
    reported = {1: [victim.stdout.readline().strip() for _ in range(40)]}  # well into its run
    victim.send_signal(signal.SIGKILL)  # mid-run: most likely inside a write transaction
    victim.wait()
    out, err = survivor.communicate(timeout=300)
    assert survivor.returncode == 0, err
    reported[0] = out.split()
    assert len(reported[0]) == PER_RANK and len(reported[1]) == 40

    with TrajectoryStore(fresh_postgres_url, create=False) as store:
        stored = {e.id: e for batch in store.iter_episodes(EpisodeFilter(run_id=run_id)) for e in batch}
        assert partial_episodes(store) == 0
        assert store.get_run(run_id).name == "ranks"
    for rank, ids in reported.items():
        assert set(ids) <= set(stored), f"rank {rank} reported episodes the store lacks"
    by_rank = {rank: [e for e in stored.values() if e.writer["rank"] == rank] for rank in (0, 1)}
    assert len(by_rank[0]) == PER_RANK and 40 <= len(by_rank[1]) <= 41  # at most the one committed as it died
    assert {e.writer["pid"] for e in by_rank[0]} == {survivor.pid} and {e.writer["pid"] for e in by_rank[1]} == {victim.pid}
    assert {e.writer["host"] for e in stored.values()} == {socket.gethostname()}
    assert len(stored) == len(reported[0]) + len(by_rank[1])  # ids never collided
