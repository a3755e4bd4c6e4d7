"""``opd suites``: list the registered tool suites and show one."""

from __future__ import annotations

import json

import typer
from rich.table import Table

from opd.cli.options import SUITE_OPTION, default_split, parse_options
from opd.cli.render import console, fail
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
    try:
        suites = [make_suite(name) for name in suite_names()]
    except OpdError as exc:
        fail(str(exc))
    for name, suite in zip(suite_names(), suites, strict=True):
        table.add_row(
            name,
            gym_id(name),
            ", ".join(t.name for t in suite.tools),
            "required" if suite.requires_isolation else "-",
            summary(suite.description),
        )
    console.print(table)


def summary(description: str) -> str:
    """A suite description's first paragraph on one line: a description taken from a docstring goes on for paragraphs."""
    return " ".join(description.strip().split("\n\n")[0].split())


@app.command("show")
def show(
    name: str,
    difficulty: str = typer.Option(None, help="Suite difficulty, if it takes one (the same as -o difficulty=...)."),
    option: list[str] = SUITE_OPTION,
    split: str = typer.Option("all", help="Task split to sample from: train, eval or all."),
    model: str = typer.Option(None, "--model", "-m", help="A model directory or hub name: show what it sees."),
) -> None:
    """Print a suite's tool schemas and one sample task; with --model, what that model sees, turn by turn, with token counts."""
    import numpy as np

    from opd.envs import make_suite

    options = {**parse_options(option), **({"difficulty": difficulty} if difficulty else {})}
    try:
        suite = make_suite(name, split=default_split(name, options, split), **options)
    except OpdError as exc:
        fail(str(exc))
    if model:
        _show_as_model_sees_it(name, options, model)
        return
    console.print_json(json.dumps(suite.tool_schemas))
    task = suite.tasks.sample(np.random.default_rng(0))
    console.print(f"[bold]sample task[/] {task.id}: {task.prompt}")


def _show_as_model_sees_it(name: str, options: dict[str, str], model: str) -> None:
    """The scripted expert's episode on seed 0 in ``model``'s tokens: each context the model reads and each turn it writes."""
    from rich.markup import escape
    from transformers import AutoTokenizer

    from opd.agents.chat_tokens import ChatTokens
    from opd.agents.rollout import expert_demonstration
    from opd.envs import ToolEnv

    tokenizer = AutoTokenizer.from_pretrained(model)
    chat = ChatTokens(tokenizer)
    env = ToolEnv(name, **options)
    episode = expert_demonstration(chat, env, 0, run_id="show", suite_options=options)
    env.close()
    format_name = type(chat.call_format).__name__
    console.print(f"[bold]{name}[/] as {model} sees it: tool calls in {format_name}, {len(tokenizer):,}-token vocabulary")
    for step in episode.steps:
        context, written = step.token_ids[~step.policy_mask], step.token_ids[step.policy_mask]
        console.rule(f"turn {step.index + 1}: reads {len(context):,} tokens", style="dim")
        console.print(escape(tokenizer.decode(context.tolist(), skip_special_tokens=False)), style="dim")
        console.rule(f"turn {step.index + 1}: writes {len(written):,} tokens", style="dim")
        console.print(escape(tokenizer.decode(written.tolist(), skip_special_tokens=False)))
    if chat.rewrites_earlier_turns:
        console.print("[yellow]This template rewrites earlier turns; opd keeps each turn's tokens as the model saw them.[/]")
    total, policy = episode.num_tokens, int(episode.policy_mask.sum())
    console.print(f"[bold]{total:,} tokens[/], {policy:,} written by the model, reward {episode.reward:.2f}")


@app.command("play")
def play(
    name: str,
    episodes: int = typer.Option(2, min=1, help="Episodes to play."),
    seed: int = typer.Option(0, help="Seed of the first episode."),
    difficulty: str = typer.Option(None, help="Suite difficulty, if it takes one (the same as -o difficulty=...)."),
    option: list[str] = SUITE_OPTION,
    split: str = typer.Option("all", help="Task split to play: train, eval or all."),
    store: str = typer.Option(None, "--store", "-s", help="Also write the episodes to this trajectory store."),
    tokenizer: str = typer.Option(
        None, "--tokenizer", "-t", help="Record tokens for this model's tokenizer and chat template, so the episodes can be trained on."
    ),
) -> None:
    """Play a suite's scripted expert through its env and print every turn."""
    from opd import __version__
    from opd.cli.render import show_turn
    from opd.envs import ToolEnv, make_suite
    from opd.envs.lending import SandboxConfig, borrowed, open_sandboxes
    from opd.trajectories import Run, TrajectoryStore

    options = {**parse_options(option), **({"difficulty": difficulty} if difficulty else {})}
    run = Run(name=f"expert: {name}", config={"suite": name, **options, "episodes": episodes, "seed": seed}, code_version=__version__)
    record = expert_recorder(tokenizer)
    sandboxes = None
    try:
        options = {**options, **({"split": split} if default_split(name, options, split) != "all" else {})}
        # A suite that runs code in its sandbox plays in a Docker one (compose-started, or one of our own), like opd train.
        sandboxes = open_sandboxes(SandboxConfig(size=1), make_suite(name, **options))
        with borrowed(sandboxes, 1) as (sandbox,):
            env = ToolEnv(name, sandbox=sandbox, limits=sandboxes.limits, **options)
            played = [record(env, seed + i, run_id=run.id, suite_options=options) for i in range(episodes)]
            env.close()
    except OpdError as exc:
        fail(str(exc))
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
        tokens = f"tokenized for {tokenizer}" if tokenizer else "text only (pass --tokenizer MODEL to record tokens to train on)"
        console.print(f"stored {episodes} episodes in {store}, {tokens}")


def expert_recorder(tokenizer: str | None):
    """How to record an expert episode: text only, or with the tokens ``tokenizer``'s model would have written."""
    from opd.agents import expert_episode

    if tokenizer is None:
        return expert_episode
    import functools

    from transformers import AutoTokenizer

    from opd.agents.chat_tokens import ChatTokens
    from opd.agents.rollout import expert_demonstration

    try:
        chat = ChatTokens(AutoTokenizer.from_pretrained(tokenizer))
    except (OSError, ValueError) as exc:
        fail(f"Cannot load the tokenizer of {tokenizer!r}: {exc}")
    return functools.partial(expert_demonstration, chat)
