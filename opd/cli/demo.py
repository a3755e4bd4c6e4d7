"""``opd demo``: the main job on embedded defaults.

Until the training loop lands, the demo plays each built-in suite's scripted
expert through its environment, prints what happened, and writes every episode
to the trajectory store, so a new user sees tasks, tool calls, observations and
rewards end to end and can inspect them with ``opd episodes``.
"""

from __future__ import annotations

import typer

from opd import __version__
from opd.agents import expert_episode
from opd.cli.episodes import StoreOption, open_store
from opd.cli.render import console, show_turn
from opd.envs import ToolEnv, suite_names
from opd.trajectories import Run, default_store_location


def demo(
    episodes: int = typer.Option(2, min=1, help="Episodes per suite."),
    seed: int = typer.Option(0, help="Seed of the first episode."),
    difficulty: str = typer.Option("medium", help="easy, medium or hard."),
    store: str = StoreOption,
) -> None:
    """Run the demo: today, the scripted experts of the built-in suites (training arrives in a later release)."""
    console.rule("[bold]opd demo[/] - scripted experts through the built-in tool environments")
    console.print("[dim]This demo plays each suite's scripted expert; the distillation demo replaces it once training lands.[/]")
    config = {"command": "demo", "episodes": episodes, "seed": seed, "difficulty": difficulty}
    totals = []
    with open_store(store, create=True) as trajectories:
        run = trajectories.add_run(Run(name="demo: scripted experts", config=config, code_version=__version__))
        for name in suite_names():
            env = ToolEnv(name, difficulty=difficulty)
            if env.suite.expert is None or env.suite.requires_isolation:
                env.close()
                continue
            successes = 0
            for offset in range(episodes):
                episode = expert_episode(env, seed + offset, run_id=run.id, suite_options={"difficulty": difficulty})
                trajectories.write_episode(episode)
                console.rule(f"{name} - task {episode.task_id} (seed {seed + offset}) - episode {episode.id[:12]}", style="dim")
                console.print(episode.initial_messages[-1]["content"])
                for step in episode.steps:
                    show_turn(step.index + 1, step.action, step.observation)
                console.print(f"[bold]reward {episode.reward:.2f}[/] success={episode.success}")
                successes += episode.success
            totals.append((name, successes))
            env.close()
    console.rule()
    for name, successes in totals:
        console.print(f"{name}: expert solved {successes}/{episodes} tasks")
    where = store or default_store_location()
    console.print(f"Episodes stored in {where} (run {run.id}). Inspect them: opd episodes list --store {where}")
