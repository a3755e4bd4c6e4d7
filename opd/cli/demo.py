"""``opd demo``: the main job on embedded defaults.

Builds a tiny teacher and a smaller student from nothing, then compares
off-policy SFT with on-policy distillation from the same start at an equal
budget of teacher-labelled tokens; prints the results table, writes every
episode to the trajectory store and a PNG plot. See ``opd.distill.demo``.
"""

from __future__ import annotations

import time

import typer
from rich.table import Table

from opd.cli.render import console


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
    console.print(f"plot: {result.plot}\nepisodes: opd episodes list --store {where}   (runs 'demo: sft' and 'demo: opd')")
