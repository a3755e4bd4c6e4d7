"""``opd demo``: the main job on embedded defaults.

Builds a tiny teacher and a smaller student from nothing, then compares
off-policy SFT with on-policy distillation from the same start at an equal
budget of teacher-labelled tokens; prints the results table, writes every
episode to the trajectory store and a PNG plot. See ``opd.distill.demo``.
"""

from __future__ import annotations

import shlex
import time
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from opd.cli.render import console, opd_command

if TYPE_CHECKING:
    from opd.distill.evaluate import EvalResult


def demo(
    quick: bool = typer.Option(False, "--quick", help="A smaller budget and evaluation (what CI runs)."),
    workdir: str = typer.Option("runs/demo", help="Models, checkpoints, metrics and the plot."),
    store: str = typer.Option(None, "--store", "-s", help="Trajectory store (default: $OPD_STORE, else runs/opd.db)."),
    seed: int = typer.Option(0, help="Seed of the whole demo."),
) -> None:
    """Distil a tiny tool-using teacher into a smaller student: off-policy SFT vs on-policy distillation."""
    from opd.distill.demo import DemoConfig, run_demo
    from opd.trajectories import default_store_location

    where = store or default_store_location()
    settings = {"workdir": workdir, "store": where, "seed": seed}
    config = DemoConfig.quick(**settings) if quick else DemoConfig(**settings)
    console.rule("[bold]opd demo[/] - on-policy distillation vs SFT on the calculator suite")
    started = time.perf_counter()
    result = run_demo(config, report=lambda message: console.print(f"[dim]{time.perf_counter() - started:6.1f}s[/] {message}"))
    table = Table(title=f"calculator (easy): greedy success on {config.eval_episodes} held-out tasks, 95% interval")
    for column in ("policy", "success", "teacher-labelled tokens", "wall time"):
        table.add_column(column, justify="left" if column == "policy" else "right")
    table.add_row("teacher (2 layers, d=128)", result.teacher.describe(), "-", f"{result.wall_seconds['teacher (build or load)']:.0f} s")
    table.add_row("student start (2 layers, d=32)", result.student_start.describe(), "0", "-")
    for arm, label in (("sft", "student after off-policy SFT"), ("opd", "student after OPD (reverse KL)")):
        outcome = result.arms[arm]
        table.add_row(label, outcome.final_eval.describe(), f"{outcome.labelled_tokens:,}", f"{result.wall_seconds[arm]:.0f} s")
    console.print(table)
    console.print(conclusion(result.arms["sft"].final_eval, result.arms["opd"].final_eval), highlight=False)
    opd, store_path = opd_command(), shlex.quote(_absolute(where))
    console.print(
        f"plot: {_absolute(str(result.plot)) if result.plot else '(not written)'}\n"
        f"look further:\n  {opd} runs list --store {store_path}\n"
        f"  {opd} episodes list --store {store_path} --run 'demo: opd'\n"
        f"  {opd} view --store {store_path}\n"
        f"  {opd} eval {shlex.quote(_absolute(str(result.arms['opd'].checkpoint)))} --store {store_path}",
        soft_wrap=True,
        highlight=False,
    )


def conclusion(sft: EvalResult, opd: EvalResult) -> str:
    """One line: which arm did better on held-out tasks, and whether the 95% intervals separate them."""
    ahead, behind = ("OPD", "SFT") if opd.success_rate >= sft.success_rate else ("SFT", "OPD")
    figures = f"OPD {opd.success_rate:.1%} vs SFT {sft.success_rate:.1%}"
    if opd.ci_low > sft.ci_high or sft.ci_low > opd.ci_high:
        return f"conclusion: {figures}: {ahead} is ahead and the difference is outside the 95% intervals (they do not overlap)."
    return f"conclusion: {figures}: the 95% intervals overlap, so this budget does not separate {ahead} from {behind}."


def _absolute(location: str) -> str:
    return location if "://" in location else str(Path(location).resolve())
