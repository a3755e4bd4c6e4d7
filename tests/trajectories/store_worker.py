"""A separate process that writes or reads a store, for the crash and concurrency tests.

python store_worker.py write DB SEED COUNT   (COUNT 0: until killed)
python store_worker.py read DB SECONDS
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parents[1]))
from trajectory_factories import make_episode  # noqa: E402

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
    else:
        read(db, float(rest[0]))
