"""Trajectory-store write throughput against two baselines, and the size of teacher annotations.

Side by side in one run, on the same synthetic episodes (4 steps of 64 context
+ 32 policy tokens, top-64 teacher annotations per policy token):

* ``TrajectoryStore.write_episode``: one transaction per episode (WAL, BEGIN IMMEDIATE);
* ``TrajectoryStore.write_episodes``: one transaction per 64 episodes;
* naive autocommit: plain ``sqlite3`` with SQLite's default settings, every row its own transaction;
* raw ``executemany``: plain ``sqlite3`` with the store's settings and the same rows (encoded from the
  records inside the timing, as any writer must), one transaction per episode: the floor for this schema.

Then the bytes per annotated token of the top-k format against fp32 logits over the full vocabulary.

    .venv/bin/python benchmarks/store.py [--episodes 300]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))
from trajectory_factories import make_episode  # noqa: E402

from opd.trajectories import Episode, Run, TrajectoryStore, convert  # noqa: E402

VOCAB = 151_936
K = 64


def encoded_rows(episode: Episode) -> list[tuple[str, list[dict]]]:
    """(table, rows) exactly as the store would insert them, JSON already serialised."""
    tables = [("episodes", [convert.episode_to_row(episode)]), ("steps", [convert.step_to_row(episode.id, s) for s in episode.steps])]
    tables += [(name, rows) for name, rows in convert.annotation_rows(episode.id, episode.annotations).items() if rows]
    return [(name, [json_encoded(row) for row in rows]) for name, rows in tables]


def json_encoded(row: dict) -> dict:
    return {k: json.dumps(v) if isinstance(v, dict | list) else v for k, v in row.items()}


def insert_sql(table: str, row: dict) -> str:
    columns = ", ".join(f'"{c}"' for c in row)
    return f"INSERT INTO {table} ({columns}) VALUES ({', '.join(':' + c for c in row)})"


def fresh_store(directory: Path, name: str) -> tuple[Path, str]:
    path = directory / f"{name}.db"
    with TrajectoryStore(path) as store:
        run_id = store.add_run(Run(name=name)).id
    return path, run_id


def time_it(fn: Callable[[], None]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def store_arm(directory: Path, episodes: list[Episode], batch: int) -> Callable[[], float]:
    def arm() -> float:
        path, run_id = fresh_store(directory, f"store{batch}-{time.monotonic_ns()}")
        mine = [dataclasses.replace(e, run_id=run_id) for e in episodes]
        with TrajectoryStore(path) as store:
            return time_it(lambda: [store.write_episodes(mine[i : i + batch]) for i in range(0, len(mine), batch)])

    return arm


def naive_arm(directory: Path, episodes: list[Episode]) -> float:
    path, run_id = fresh_store(directory, f"naive-{time.monotonic_ns()}")
    mine = [dataclasses.replace(e, run_id=run_id) for e in episodes]
    naive = sqlite3.connect(path, isolation_level=None)  # autocommit, SQLite's default journal and sync settings
    naive.execute("PRAGMA journal_mode = DELETE")
    seconds = time_it(lambda: [naive.execute(insert_sql(t, r), r) for e in mine for t, rows in encoded_rows(e) for r in rows])
    naive.close()
    return seconds


def raw_arm(directory: Path, episodes: list[Episode]) -> float:
    path, run_id = fresh_store(directory, f"raw-{time.monotonic_ns()}")
    mine = [dataclasses.replace(e, run_id=run_id) for e in episodes]
    raw = sqlite3.connect(path, isolation_level=None)
    raw.execute("PRAGMA synchronous = NORMAL")

    def write() -> None:
        for episode in mine:
            rows = encoded_rows(episode)
            raw.execute("BEGIN IMMEDIATE")
            for table, table_rows in rows:
                raw.executemany(insert_sql(table, table_rows[0]), table_rows)
            raw.execute("COMMIT")

    seconds = time_it(write)
    raw.close()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3, help="arms run interleaved this many times; the median counts")
    args = parser.parse_args()
    directory = Path(tempfile.mkdtemp(prefix="opd-bench-store-"))
    rng = np.random.default_rng(0)
    episodes = [make_episode(rng, Run(name="bench"), steps=4, policy_tokens=32, k=K) for _ in range(args.episodes)]
    steps = sum(len(e.steps) for e in episodes)
    arms: dict[str, Callable[[], float]] = {
        "TrajectoryStore.write_episode (1 txn/episode)": store_arm(directory, episodes, 1),
        "TrajectoryStore.write_episodes (1 txn/64)": store_arm(directory, episodes, 64),
        "naive autocommit per row (SQLite defaults)": lambda: naive_arm(directory, episodes),
        "raw sqlite3 executemany (1 txn/episode)": lambda: raw_arm(directory, episodes),
    }
    timings: dict[str, list[float]] = {name: [] for name in arms}
    for _ in range(args.rounds):  # interleaved, so that a noisy neighbour hurts every arm alike
        for name, arm in arms.items():
            timings[name].append(arm())
    results = {name: statistics.median(values) for name, values in timings.items()}

    console = Console()
    table = Table(title=f"store writes: {args.episodes} episodes, {steps} steps, top-{K} annotations (median of {args.rounds})")
    for column in ("writer", "episodes/s", "steps/s", "vs store"):
        table.add_column(column, justify="right" if column != "writer" else "left")
    reference = results["TrajectoryStore.write_episode (1 txn/episode)"]
    for name, seconds in results.items():
        table.add_row(name, f"{args.episodes / seconds:,.0f}", f"{steps / seconds:,.0f}", f"{seconds / reference:.2f}x time")
    console.print(table)

    annotation = episodes[0].annotations.token_logprobs[0]
    per_token = (annotation.token_ids.nbytes // annotation.token_ids.shape[0]) + annotation.k * 2 + 4
    stored = annotation.token_ids.shape[0] * per_token
    sizes = Table(title="bytes per annotated token")
    for column in ("format", "bytes/token", "fraction of full"):
        sizes.add_column(column)
    fraction = f"1/{VOCAB * 4 / per_token:,.0f}"
    sizes.add_row(f"top-{K} int32 ids + float16 log-probs + float32 tail", f"{stored / annotation.token_ids.shape[0]:,.0f}", fraction)
    sizes.add_row(f"fp32 full vocabulary (V={VOCAB:,})", f"{VOCAB * 4:,}", "1")
    console.print(sizes)


if __name__ == "__main__":
    main()
