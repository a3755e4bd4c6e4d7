"""The share of a training update spent in Docker sandboxes, for sandbox pools of 1, 2 and 4 per process.

The same short run (``python`` suite, easy tasks, tiny word-level student and
teacher built here, 8 episodes per update) with ``sandbox.size`` 1, 2 and 4,
side by side in one run. "In sandboxes" is the wall time spent inside
``DockerSandbox`` calls (exec, file reads and writes, resets), measured by
wrapping those methods for the benchmark only. Containers are the pool's own
(``attach: false``), created before the clock starts.

    .venv/bin/python benchmarks/sandboxed_training.py [--updates 3] [--episodes 8]
"""

from __future__ import annotations

import argparse
import functools
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from opd.agents.policy import SamplingConfig
from opd.agents.tiny import build_tiny_model, build_word_tokenizer, expert_texts
from opd.distill.config import TrainConfig
from opd.distill.train import train
from opd.envs import ToolEnv
from opd.envs.docker import DockerSandbox, SandboxPool
from opd.envs.lending import SandboxConfig

SPENT = {"seconds": 0.0, "calls": 0}


def timed(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return method(*args, **kwargs)
        finally:
            SPENT["seconds"] += time.perf_counter() - started
            SPENT["calls"] += 1

    return wrapper


def build_models(directory: Path) -> tuple[Path, Path]:
    with SandboxPool(kind="python", size=1, attach=False) as pool, pool.borrow() as sandbox:
        texts = expert_texts(ToolEnv("python", sandbox=sandbox, difficulty="easy"), 10)
    tokenizer = build_word_tokenizer(texts, directory / "student", numbers=range(0, 300))
    build_tiny_model(tokenizer, directory / "student", layers=1, hidden=32, heads=2, seed=0)
    build_tiny_model(tokenizer, directory / "teacher", layers=1, hidden=64, heads=2, seed=1)
    return directory / "student", directory / "teacher"


def run(models: tuple[Path, Path], directory: Path, size: int, updates: int, episodes: int) -> tuple[float, float, int]:
    """(seconds per update, share in sandboxes, sandbox calls) of one run with a pool of ``size``."""
    config = TrainConfig(
        student=str(models[0]), teacher=str(models[1]), suite="python", suite_options={"difficulty": "easy"}, max_turns=3,
        store=str(directory / "store.db"), output_dir=str(directory / "out"), updates=updates, episodes_per_update=episodes,
        eval_every=0, eval_episodes=1, checkpoint_every=0, teacher_k=8, sampling=SamplingConfig(max_new_tokens=24),
        tensorboard=False, sandbox=SandboxConfig(size=size, attach=False),
    )  # fmt: skip
    seconds: list[float] = []
    marks = {"spent": 0.0, "calls": 0}

    def progress(update: int, values: dict[str, Any]) -> None:
        if update == 1:  # the first update pays for warm-up; measure from its end
            marks.update(spent=SPENT["seconds"], calls=SPENT["calls"], at=time.perf_counter())
        seconds.append(values["wall_seconds"])

    SPENT.update(seconds=0.0, calls=0)
    train(config, resume=False, progress=progress)
    measured = seconds[-1] - seconds[0]
    in_sandboxes = SPENT["seconds"] - marks["spent"]
    # The final evaluation after the last update is outside `measured`; its sandbox time is small (1 episode) but counted.
    return measured / (updates - 1), min(1.0, in_sandboxes / measured), SPENT["calls"] - int(marks["calls"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=3, help="updates per run; the first is warm-up")
    parser.add_argument("--episodes", type=int, default=8, help="episodes per update")
    args = parser.parse_args()
    for name in ("exec", "read_file", "write_files", "reset"):
        setattr(DockerSandbox, name, timed(getattr(DockerSandbox, name)))
    table = Table(title=f"share of an update in Docker sandboxes ({platform.machine()}, Python {platform.python_version()})")
    for column in ("pool size", "s / update", "in sandboxes", "sandbox calls / update"):
        table.add_column(column, justify="right")
    with tempfile.TemporaryDirectory() as tmp:
        models = build_models(Path(tmp) / "models")
        for size in (1, 2, 4):
            per_update, share, calls = run(models, Path(tmp) / f"size-{size}", size, args.updates, args.episodes)
            table.add_row(str(size), f"{per_update:.2f}", f"{share:.0%}", f"{calls / (args.updates - 1):.0f}")
    Console().print(table)


if __name__ == "__main__":
    main()
