"""A separate process that writes or reads a store, for the crash and concurrency tests.

python store_worker.py write DB SEED COUNT   (COUNT 0: until killed)
python store_worker.py read DB SECONDS
RANK=R python store_worker.py rank DB RUN_ID COUNT   (one rank of a job: prints each episode id once it is committed)
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parents[1]))
from trajectory_factories import make_episode  # noqa: E402

from opd.agents.recording import writer_info  # noqa: E402
from opd.trajectories import EpisodeFilter, Run, TrajectoryStore  # noqa: E402


def write(db: str, seed: int, count: int) -> None:
    rng = np.random.default_rng(seed)
    with TrajectoryStore(db) as store:
        run = store.add_run(Run(id=f"{seed:032d}", name=f"writer {seed}"))
        print("ready", flush=True)
        written = 0
        while count == 0 or written < count:
            store.write_episode(make_episode(rng, run, steps=int(rng.integers(1, 6)), policy_tokens=int(rng.integers(1, 64))))
            written += 1


def rank(db: str, run_id: str, count: int) -> None:
    """As a training rank does: rank 0 records the run, every rank writes its episodes with its writer info."""
    rank = int(os.environ["RANK"])
    rng = np.random.default_rng(rank)
    with TrajectoryStore(db) as store:  # every rank opens (and so may migrate) the new database at once
        if rank == 0:
            store.add_run(Run(id=run_id, name="ranks"))
        while not store.runs():  # the other ranks wait for it, as they wait at the loop's barrier
            time.sleep(0.05)
        print("ready", flush=True)
        for _ in range(count):
            episode = make_episode(rng, Run(id=run_id), steps=int(rng.integers(1, 6)), policy_tokens=int(rng.integers(1, 64)))
            episode = dataclasses.replace(episode, writer=writer_info())
            store.write_episode(episode)
            print(episode.id, flush=True)


def read(db: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    reads = 0
    with TrajectoryStore(db) as store:
        print("ready", flush=True)
        while time.monotonic() < deadline:
            for batch in store.iter_episodes(EpisodeFilter(success=True), batch_size=32):
                for episode in batch:
                    assert len(episode.steps) > 0
                reads += 1
            store.count_episodes()
    print(f"reads {reads}", flush=True)


if __name__ == "__main__":
    mode, db, *rest = sys.argv[1:]
    if mode == "write":
        write(db, int(rest[0]), int(rest[1]))
    elif mode == "rank":
        rank(db, rest[0], int(rest[1]))
    else:
        read(db, float(rest[0]))
