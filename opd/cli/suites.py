"""``opd suites``: list the registered tool suites and show one."""

from __future__ import annotations

import json

import typer
from rich.table import Table

from opd.cli.render import console
from opd.errors import OpdError

app = typer.Typer(help="Inspect the registered tool suites.", no_args_is_help=True)


@app.command("list")
def list_suites() -> None:
    """List every registered suite with its Gymnasium id and tools."""
    from opd.envs import gym_id, make_suite, suite_names  # here, not at the top: `opd --help` need not load the suites

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

    from opd.envs import make_suite

    try:
        suite = make_suite(name, **({"difficulty": difficulty} if difficulty else {}))
    except OpdError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from None
    console.print_json(json.dumps(suite.tool_schemas))
    task = suite.tasks.sample(np.random.default_rng(0))
    console.print(f"[bold]sample task[/] {task.id}: {task.prompt}")


@app.command("play")
def play(
    name: str,
    episodes: int = typer.Option(2, min=1, help="Episodes to play."),
    seed: int = typer.Option(0, help="Seed of the first episode."),
    difficulty: str = typer.Option(None, help="Suite difficulty, if it takes one."),
    store: str = typer.Option(None, "--store", "-s", help="Also write the episodes to this trajectory store."),
) -> None:
    """Play a suite's scripted expert through its env and print every turn."""
    from opd import __version__
    from opd.agents import expert_episode
    from opd.cli.render import show_turn
    from opd.envs import ToolEnv, make_suite
    from opd.envs.lending import SandboxConfig, borrowed, open_sandboxes
    from opd.trajectories import Run, TrajectoryStore

    options = {"difficulty": difficulty} if difficulty else {}
    run = Run(name=f"expert: {name}", config={"suite": name, **options, "episodes": episodes, "seed": seed}, code_version=__version__)
    sandboxes = None
    try:
        # A suite that runs code in its sandbox plays in a Docker one (compose-started, or one of our own), like opd train.
        sandboxes = open_sandboxes(SandboxConfig(size=1), make_suite(name, **options))
        with borrowed(sandboxes, 1) as (sandbox,):
            env = ToolEnv(name, sandbox=sandbox, limits=sandboxes.limits, **options)
            played = [expert_episode(env, seed + i, run_id=run.id, suite_options=options) for i in range(episodes)]
            env.close()
    except OpdError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from None
    finally:
        if sandboxes is not None:
            sandboxes.close()
    for episode in played:
        console.rule(f"{name} - task {episode.task_id} (seed {episode.seed})", style="dim")
        console.print(episode.initial_messages[-1]["content"])
        for step in episode.steps:
            show_turn(step.index + 1, step.action, step.observation)
        console.print(f"[bold]reward {episode.reward:.2f}[/] success={episode.success}")
    console.print(f"{name}: expert solved {sum(e.success for e in played)}/{episodes} tasks")
    if store:
        with TrajectoryStore(store) as trajectories:
            trajectories.add_run(run)
            trajectories.write_episodes(played)
        console.print(f"stored {episodes} episodes in {store}")
