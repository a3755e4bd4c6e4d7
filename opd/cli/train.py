"""``opd train CONFIG`` and ``opd eval``: the training loop and held-out evaluation from the command line."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from opd.cli.options import SPLIT_HELP, SUITE_OPTION, default_split, parse_options
from opd.cli.render import console, describe_usage, fail
from opd.errors import OpdError


def train_command(
    config: Path = typer.Argument(..., exists=True, dir_okay=False, help="YAML or TOML training config (see docs/training.md)."),
    fresh: bool = typer.Option(False, "--fresh", help="Ignore checkpoints in the output directory and start over."),
) -> None:
    """Run (or resume) on-policy distillation as CONFIG describes."""
    from opd.distill.config import load_config
    from opd.distill.distributed import launch_env
    from opd.distill.train import train

    console.quiet = launch_env().rank != 0  # under torchrun, rank 0 speaks for the job
    try:
        settings = load_config(config)
    except OpdError as exc:
        fail(str(exc))
    console.print(f"[bold]opd train[/] {config}: {settings.suite} with {settings.loss.kind} loss, student {settings.student}")
    with Progress(
        TextColumn("[bold]update"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        console=console,
    ) as bar:
        task = bar.add_task("train", total=settings.updates, status="")

        def progress(update: int, values: dict) -> None:
            status = f"loss {values['loss']:.4f}  rollout success {values['rollout/success']:.0%}"
            if "eval/success" in values:
                status += f"  eval {values['eval/success']:.0%}"
            bar.update(task, completed=update, status=status)

        try:
            result = train(settings, resume=not fresh, progress=progress)
        except OpdError as exc:
            fail(str(exc))
    console.print(
        f"done: {result.updates} updates, {result.labelled_tokens:,} teacher-labelled tokens, {result.skipped_updates} skipped; "
        f"held-out success {result.final_eval.describe()}\n"
        f"checkpoint: {result.checkpoint}\nmetrics: {Path(settings.output_dir) / 'metrics.jsonl'}"
    )
    if result.critique_usage is not None:
        console.print(f"critic: {describe_usage(result.critique_usage)}")


def eval_command(
    model: str = typer.Argument(..., help="Checkpoint directory or hub name of the policy."),
    suite: str = typer.Option("calculator", help="Registered tool suite."),
    option: list[str] = SUITE_OPTION,
    split: str = typer.Option(None, help=SPLIT_HELP),
    episodes: int = typer.Option(100, min=1, help="Held-out tasks to play."),
    max_turns: int = typer.Option(None, help="Turn limit (default: the suite's)."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Measure a policy's greedy success rate on held-out tasks, with a 95% confidence interval."""
    from opd.agents.policy import CausalLMPolicy
    from opd.distill.evaluate import evaluate

    options = parse_options(option)
    try:
        split = default_split(suite, options, split)
        policy = CausalLMPolicy.from_pretrained(model)
        run_options = {**options, **({"split": split} if split != "all" else {})}
        result, _ = evaluate(policy, suite, suite_options=run_options, episodes=episodes, max_turns=max_turns)
    except (OpdError, OSError) as exc:
        fail(str(exc))
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "success_rate": result.success_rate,
                    "ci_low": result.ci_low,
                    "ci_high": result.ci_high,
                    "episodes": result.episodes,
                    "split": split,
                }
            )
        )
    else:
        console.print(f"{model} on {suite} ({split} split): success {result.describe()}, mean reward {result.mean_reward:.3f}")
