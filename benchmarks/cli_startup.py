"""How long `opd` takes to start for commands that load no model, against what eager imports used to cost.

Each row runs a fresh Python process `--repeats` times and reports the median
wall time. "opd --help" is the command as installed now (heavy libraries, the
store and the suites are imported by the commands that use them). The two
baseline rows import first what every `opd` command imported before: the
trajectory store (SQLAlchemy, Alembic, the schema) and the suites, until
2026-12-02; and torch and transformers as well, until 2026-12-01 (the suites
imported transformers, which imported torch). "opd runs list" opens an empty
SQLite store: a command that loads no model but needs the store; its baseline
imports Alembic first, as opening any store did until 2026-12-02.

    .venv/bin/python benchmarks/cli_startup.py
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from opd.trajectories import TrajectoryStore


def cli(*args: str) -> str:
    return f"from opd.cli.app import app\ntry:\n    app({list(args)!r})\nexcept SystemExit:\n    pass\n"


ALEMBIC = "import alembic.command, alembic.config, alembic.runtime.migration, alembic.script\n"
STORE_AND_SUITES = ALEMBIC + "import opd.trajectories.store, opd.envs\n"
MODELS = "import torch, transformers.utils.chat_template_utils\n"


def cases(store: Path) -> dict[str, str]:
    return {
        "opd --help (lazy imports)": cli("--help"),
        "opd --help + store, suites (before 2026-12-02)": STORE_AND_SUITES + cli("--help"),
        "opd --help + store, suites, torch, transformers (before 2026-12-01)": MODELS + STORE_AND_SUITES + cli("--help"),
        "opd runs list (empty SQLite store)": cli("runs", "list", "--store", str(store)),
        "opd runs list + alembic (before 2026-12-02)": ALEMBIC + cli("runs", "list", "--store", str(store)),
        "python -c pass (interpreter alone)": "pass",
    }


def median_seconds(code: str, repeats: int) -> tuple[float, float]:
    """Median wall and CPU (user + system) seconds of a process running ``code``; CPU time is what a loaded
    machine inflates least."""
    wall, cpu = [], []
    for _ in range(repeats):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
        wall.append(time.perf_counter() - started)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return statistics.median(wall), statistics.median(cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"| command | median wall s ({args.repeats} runs) | median CPU s (user + sys) |\n|---|---:|---:|")
    with tempfile.TemporaryDirectory() as scratch:
        store = Path(scratch) / "opd.db"
        TrajectoryStore(str(store), create=True).close()
        for name, code in cases(store).items():
            wall, cpu = median_seconds(code, args.repeats)
            print(f"| {name} | {wall:.2f} | {cpu:.2f} |", flush=True)


if __name__ == "__main__":
    main()
