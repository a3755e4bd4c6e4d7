"""Several processes on one SQLite store: crashes leave nothing partial, concurrency never fails with "locked"."""

from __future__ import annotations

import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from opd.trajectories import TrajectoryStore

WORKER = Path(__file__).with_name("store_worker.py")


def start(*args: str) -> subprocess.Popen[str]:
    process = subprocess.Popen([sys.executable, str(WORKER), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line.strip() == "ready", process.stderr.read() if process.stderr else line
    return process


def assert_consistent(db: Path) -> int:
    """Every episode has exactly the steps it declares; the database passes integrity_check. Returns the episode count."""
    with sqlite3.connect(db) as raw:
        assert raw.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    with TrajectoryStore(db) as store, store._engines.read.connect() as connection:
        partial = connection.execute(
            sa.text(
                "SELECT COUNT(*) FROM episodes e WHERE e.num_steps != (SELECT COUNT(*) FROM steps s WHERE s.episode_id = e.id) "
                "OR (SELECT COUNT(*) FROM token_logprobs t WHERE t.episode_id = e.id) != e.num_steps"
            )
        ).scalar_one()
        assert partial == 0
        return store.count_episodes()


@pytest.mark.slow
def test_sigkill_at_random_moments_leaves_no_partial_episode(tmp_path: Path) -> None:
    db = tmp_path / "crash.db"
    rng = random.Random(0)
    counts = []
    for kill in range(50):
        writer = start("write", str(db), str(kill), "0")
        time.sleep(rng.uniform(0.0, 0.15))
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        counts.append(assert_consistent(db))
    assert counts[-1] > 50  # the writers did write between kills
    assert counts == sorted(counts)


@pytest.mark.slow
def test_two_writers_and_two_readers_at_once(tmp_path: Path) -> None:
    db = tmp_path / "busy.db"
    TrajectoryStore(db).close()
    readers = [start("read", str(db), "8") for _ in range(2)]
    writers = [start("write", str(db), str(seed), "1000") for seed in (1, 2)]
    outputs = []
    for process in writers + readers:
        out, err = process.communicate(timeout=300)
        outputs.append((process.returncode, err))
        assert "locked" not in err.lower(), err
        assert process.returncode == 0, err
    assert assert_consistent(db) == 2000
    with TrajectoryStore(db) as store:
        assert {r.name for r in store.runs()} == {"writer 1", "writer 2"}


def _open_new_store(path: str, barrier, results) -> None:  # type: ignore[no-untyped-def]
    barrier.wait()  # both processes open the not-yet-existing file at the same moment
    try:
        TrajectoryStore(path).close()
        results.put("ok")
    except Exception as exc:  # reported to the parent, which asserts
        results.put(f"{type(exc).__name__}: {exc}")


def test_processes_opening_one_new_store_at_once_all_succeed(tmp_path: Path) -> None:
    # Switching a new file to WAL needs an exclusive lock that SQLite does not wait for; this failed 6 times in 15.
    import multiprocessing

    context = multiprocessing.get_context("fork")
    for trial in range(20):
        barrier, results = context.Barrier(2), context.Queue()
        workers = [context.Process(target=_open_new_store, args=(str(tmp_path / f"{trial}.db"), barrier, results)) for _ in range(2)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=60)
        assert [results.get(timeout=5) for _ in workers] == ["ok"] * 2
