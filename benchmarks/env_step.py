"""Env steps per second for batches of 1, 8 and 64 tool envs, driven by the scripted experts.

Measures the environment alone (parse, validate, run the tool, verify), not a
model: the per-step overhead a rollout pays on top of generation. The expert's
own time is excluded from the rate.

    .venv/bin/python benchmarks/env_step.py [--steps 4000]
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
from rich.console import Console
from rich.table import Table

from opd.envs import ToolEnv, ToolEnvBatch, Turn, expert_action, make_suite, suite_names
from opd.envs.experts import record_turn


def measure(suite: str, batch_size: int, total_steps: int) -> tuple[float, float]:
    """(env steps per second, mean env time per step in microseconds) over about ``total_steps`` steps."""
    batch = ToolEnvBatch([ToolEnv(suite) for _ in range(batch_size)])
    rngs = [np.random.default_rng(i) for i in range(batch_size)]
    steps, env_seconds, seed = 0, 0.0, 0
    while steps < total_steps:
        batch.reset(seeds=list(range(seed, seed + batch_size)))
        seed += batch_size
        histories: list[list[Turn]] = [[] for _ in range(batch_size)]
        while batch.active:
            actions = {i: expert_action(batch.envs[i], histories[i], rngs[i]) for i in batch.active}
            started = time.perf_counter()
            results = batch.step(actions)
            env_seconds += time.perf_counter() - started
            steps += len(results)
            for i, result in results.items():
                histories[i].append(record_turn(batch.envs[i], actions[i], result.observation))
    batch.close()
    return steps / env_seconds, 1e6 * env_seconds / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4000, help="steps per measurement")
    args = parser.parse_args()
    table = Table(title=f"env steps/s ({platform.processor() or platform.machine()}, Python {platform.python_version()})")
    for column in ("suite", "envs", "steps/s", "µs/step"):
        table.add_column(column, justify="right")
    for suite in suite_names():
        if make_suite(suite).requires_isolation:
            continue  # Docker-backed suites: benchmarks/sandbox.py measures their per-call cost
        for batch_size in (1, 8, 64):
            rate, micros = measure(suite, batch_size, args.steps)
            table.add_row(suite, str(batch_size), f"{rate:,.0f}", f"{micros:,.1f}")
    Console().print(table)


if __name__ == "__main__":
    main()
