"""``opd suites``: list the registered tool suites and show one."""

from __future__ import annotations

import json

import typer
from rich.table import Table

from opd.cli.render import console
from opd.envs import gym_id, make_suite, suite_names
from opd.errors import OpdError

app = typer.Typer(help="Inspect the registered tool suites.", no_args_is_help=True)


@app.command("list")
def list_suites() -> None:
    """List every registered suite with its Gymnasium id and tools."""
    table = Table()
    table.add_column("suite", no_wrap=True)
    table.add_column("gymnasium id", no_wrap=True)  # never cut: users copy it into gymnasium.make
    table.add_column("tools")
    table.add_column("isolation")
    table.add_column("description")
    for name in suite_names():
        suite = make_suite(name)
        table.add_row(
            name,
            gym_id(name),
            ", ".join(t.name for t in suite.tools),
            "required" if suite.requires_isolation else "-",
            suite.description,
        )
    console.print(table)


@app.command("show")
def show(name: str, difficulty: str = typer.Option(None, help="Suite difficulty, if it takes one.")) -> None:
    """Print a suite's tool schemas (what the model sees) and one sample task."""
    import numpy as np

    try:
        suite = make_suite(name, **({"difficulty": difficulty} if difficulty else {}))
    except OpdError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from None
    console.print_json(json.dumps(suite.tool_schemas))
    task = suite.tasks.sample(np.random.default_rng(0))
    console.print(f"[bold]sample task[/] {task.id}: {task.prompt}")
