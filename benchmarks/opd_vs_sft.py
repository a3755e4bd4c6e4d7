"""On-policy distillation vs off-policy SFT, over several seeds, at equal teacher-labelled tokens and at equal wall time.

Runs the `opd demo` recipe: one teacher and one shared student start (built
once and cached), then for each seed both arms from that start with the same
budget of teacher-labelled tokens. Prints mean +- sd of final greedy success
per arm, the teacher's success, and the success each arm had reached at the
wall time the faster arm needed (OPD spends more compute per labelled token).

    .venv/bin/python benchmarks/opd_vs_sft.py [--seeds 0 1 2] [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from rich.console import Console
from rich.table import Table

from opd.distill.demo import DemoConfig, DemoResult, run_demo


def success_at(curve: tuple[tuple[int, int, float, float], ...], start: float, seconds: float) -> float:
    """The last evaluated success at or before ``seconds`` of training."""
    reached = [success for _, _, wall, success in curve if wall <= seconds]
    return reached[-1] if reached else start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--quick", action="store_true", help="the CI-sized budget")
    parser.add_argument("--workdir", default="runs/bench-opd-vs-sft")
    args = parser.parse_args()
    console = Console()
    results: list[DemoResult] = []
    for seed in args.seeds:
        settings = {"workdir": args.workdir, "store": f"{args.workdir}/opd.db", "train_seed": seed}
        config = DemoConfig.quick(**settings) if args.quick else DemoConfig(**settings)
        started = time.perf_counter()
        results.append(
            run_demo(config, report=lambda m, t0=started, s=seed: console.print(f"[dim]seed {s} {time.perf_counter() - t0:6.1f}s[/] {m}"))
        )
    table = Table(
        title=f"calculator (easy, numbers 0-99): greedy success over seeds {args.seeds}, {results[0].teacher.episodes} held-out tasks"
    )
    for column in ("policy", "success mean ± sd", "teacher-labelled tokens", "train wall s"):
        table.add_column(column, justify="left" if column == "policy" else "right")
    table.add_row("teacher", f"{results[0].teacher.success_rate:.1%}", "-", "-")
    table.add_row("student start", f"{results[0].student_start.success_rate:.1%}", "0", "-")
    for arm, label in (("sft", "off-policy SFT on teacher episodes"), ("opd", "OPD, token-level reverse KL")):
        finals = [r.arms[arm].final_eval.success_rate for r in results]
        tokens = statistics.mean(r.arms[arm].labelled_tokens for r in results)
        wall = statistics.mean(r.wall_seconds[arm] for r in results)
        table.add_row(
            label, f"{np.mean(finals):.1%} ± {np.std(finals, ddof=1) if len(finals) > 1 else 0:.1%}", f"{tokens:,.0f}", f"{wall:.0f}"
        )
    console.print(table)
    equal = Table(title="at equal wall time: each arm's success when the faster arm finished")
    for column in ("seed", "budget s", "SFT", "OPD"):
        equal.add_column(column, justify="right")
    for seed, r in zip(args.seeds, results, strict=True):
        seconds = min(r.arms["sft"].curve[-1][2], r.arms["opd"].curve[-1][2])
        equal.add_row(
            str(seed),
            f"{seconds:.0f}",
            *(f"{success_at(r.arms[a].curve, r.student_start.success_rate, seconds):.1%}" for a in ("sft", "opd")),
        )
    console.print(equal)


if __name__ == "__main__":
    main()
