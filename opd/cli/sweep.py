"""``opd sweep CONFIG``: a scaling-law sweep over student sizes x teacher-token budgets (see opd.distill.sweep)."""

from __future__ import annotations

from pathlib import Path

import typer

from opd.cli.render import console, fail
from opd.errors import OpdError


def sweep_command(
    config: Path = typer.Argument(..., exists=True, dir_okay=False, help="YAML sweep file: recipe, students, budgets (docs/training.md)."),
) -> None:
    """Train one recipe over a grid of student sizes x teacher-token budgets and fit a power law; resumes where it stopped."""
    from opd.distill.sweep import load_sweep, run_sweep

    try:
        settings = load_sweep(config)
        grid = f"{len(settings.students)} students x {len(settings.budgets)} budgets"
        console.print(f"[bold]opd sweep[/] {config}: {grid}, recipe {settings.recipe}, fitting {settings.metric}")
        points, fit, plot = run_sweep(settings, report=console.print)
    except OpdError as exc:
        fail(str(exc))
    console.print(fit.describe())
    console.print(
        f"points: {Path(settings.output_dir) / 'sweep.jsonl'} ({len(points)})\nfit: {Path(settings.output_dir) / 'fit.json'}\nplot: {plot}"
    )
