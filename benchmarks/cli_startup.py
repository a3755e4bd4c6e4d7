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


def median_seconds(code: str, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"| command | median wall s ({args.repeats} runs) |\n|---|---:|")
    for name, code in CASES.items():
        print(f"| {name} | {median_seconds(code, args.repeats):.2f} |")


if __name__ == "__main__":
    main()
