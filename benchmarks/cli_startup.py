"""How long `opd` takes to start for commands that load no model, against what eager imports used to cost.

Each row runs a fresh Python process `--repeats` times and reports the median
wall time. "opd --help" is the command as installed now (heavy libraries are
imported lazily); the baseline row imports torch and transformers first, as
every `opd` command did before (opd.cli imported the suites, which imported
transformers, which imported torch).

    .venv/bin/python benchmarks/cli_startup.py
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import time

HELP = "from opd.cli.app import app\ntry:\n    app(['--help'])\nexcept SystemExit:\n    pass\n"
CASES = {
    "opd --help (lazy imports)": HELP,
    "opd --help + torch, transformers (before)": "import torch, transformers.utils.chat_template_utils\n" + HELP,
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
    for name, code in CASES.items():
        wall, cpu = median_seconds(code, args.repeats)
        print(f"| {name} | {wall:.2f} | {cpu:.2f} |")


if __name__ == "__main__":
    main()
