"""``opd demo``: the main job on embedded defaults.

Until the training loop lands, the demo plays each built-in suite's scripted
expert through its environment and prints what happened, so a new user sees
tasks, tool calls, observations and rewards end to end.
"""

from __future__ import annotations

import typer

from opd.cli.render import console, show_turn
from opd.envs import ToolEnv, make_suite, play_expert, suite_names


def demo(
    episodes: int = typer.Option(2, min=1, help="Episodes per suite."),
    seed: int = typer.Option(0, help="Seed of the first episode."),
    difficulty: str = typer.Option("medium", help="easy, medium or hard."),
) -> None:
    """Run the demo: today, the scripted experts of the built-in suites (training arrives in a later release)."""
    console.rule("[bold]opd demo[/] - scripted experts through the built-in tool environments")
    console.print("[dim]This demo plays each suite's scripted expert; the distillation demo replaces it once training lands.[/]")
    totals = []
    for name in suite_names():
        suite = make_suite(name, difficulty=difficulty)
        if suite.expert is None or suite.requires_isolation:
            continue  # suites that run model-written code need Docker; the demo runs anywhere
        env = ToolEnv(suite)
        successes = 0
        for offset in range(episodes):
            episode = play_expert(env, seed + offset)
            console.rule(f"{name} - task {episode.task_id} (seed {seed + offset})", style="dim")
            console.print(episode.observations[0])
            for turn, (action, observation) in enumerate(zip(episode.actions, episode.observations[1:], strict=True), 1):
                show_turn(turn, action, observation)
            console.print(f"[bold]reward {episode.reward:.2f}[/] success={episode.success}")
            successes += episode.success
        totals.append((name, successes))
        env.close()
    console.rule()
    for name, successes in totals:
        console.print(f"{name}: expert solved {successes}/{episodes} tasks")
