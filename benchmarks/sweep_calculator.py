"""The scaling-law sweep of docs/benchmarks.md: 3 tiny student sizes x 4 teacher-token budgets on `calculator`.

The teacher is the demo's (built once and cached, as `opd demo` does); the
students are fresh tiny models over its tokenizer, distilled with token-level
reverse KL to its top-16 log-probs, 16 episodes per update. Writes the recipe and
the sweep file into the work directory, then runs exactly what `opd sweep` runs,
and prints the points and the fitted exponents.

    .venv/bin/python benchmarks/sweep_calculator.py [--budgets 4000 8000 16000 32000] [--offpolicy-fraction 0.5]

Fresh students sample nearly random tokens, so purely on-policy updates teach
them little within these budgets; ``--offpolicy-fraction 0.5`` trains half the
updates on teacher-generated episodes (GKD's mixing), scored the same way.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import yaml
from rich.console import Console
from rich.table import Table

from opd.distill.demo import DemoConfig, demo_models
from opd.distill.sweep import load_sweep, run_sweep

STUDENTS = [{"layers": 1, "hidden": 16, "heads": 2}, {"layers": 2, "hidden": 32, "heads": 2}, {"layers": 2, "hidden": 64, "heads": 4}]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budgets", type=int, nargs="+", default=[4000, 8000, 16000, 32000])
    parser.add_argument("--metric", choices=["heldout_loss", "success"], default="heldout_loss")
    parser.add_argument("--workdir", default="runs/bench-sweep")
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    parser.add_argument(
        "--offpolicy-fraction", type=float, default=0.0, help="GKD's lambda: the share of updates on teacher-generated episodes"
    )
    args = parser.parse_args()
    console = Console()
    demo = DemoConfig(workdir="runs/demo")
    teacher, _ = demo_models(demo, report=console.print)
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    recipe = {
        "student": "set-per-point", "teacher": str(teacher.resolve()), "suite": "calculator", "suite_options": dict(demo.suite_options),
        "store": str((work / "opd.db").resolve()), "episodes_per_update": 16, "learning_rate": args.learning_rate, "teacher_k": 16,
        "loss": {"kind": "token", "divergence": "reverse_kl"},
        "offpolicy_fraction": args.offpolicy_fraction,
        "sampling": {"temperature": 1.0, "max_new_tokens": 32}, "eval_episodes": 100, "tensorboard": False, "guard": {"action": "none"},
    }  # fmt: skip
    (work / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    sweep = {
        "recipe": "recipe.yaml",
        "students": STUDENTS,
        "budgets": args.budgets,
        "metric": args.metric,
        "output_dir": str(work / "sweep"),
    }
    (work / "sweep.yaml").write_text(yaml.safe_dump(sweep))
    started = time.perf_counter()
    points, fit, plot = run_sweep(load_sweep(work / "sweep.yaml"), report=console.print)
    table = Table(title=f"calculator sweep: {len(STUDENTS)} students x {len(args.budgets)} budgets, {time.perf_counter() - started:.0f} s")
    for column in ("student", "parameters", "budget", "labelled tokens", "held-out loss", "success"):
        table.add_column(column, justify="right")
    for p in points:
        table.add_row(
            str(p["student"]),
            f"{p['params']:,}",
            f"{p['budget']:,}",
            f"{p['labelled_tokens']:,}",
            f"{p['heldout_loss']:.4f}",
            f"{p['success']:.1%}",
        )
    console.print(table)
    console.print(fit.describe())
    console.print(f"plot: {plot}")


if __name__ == "__main__":
    main()
