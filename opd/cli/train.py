"""``opd train CONFIG [KEY=VALUE]...``: the training loop from the command line.

Everything that can be checked without a model (the config, the suite, the
store, the output directory, the model paths, whether a checkpoint may be
resumed) is checked before the first model loads.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import typer

from opd.cli.progress import training_progress
from opd.cli.render import console, describe_usage, fail, opd_command
from opd.errors import OpdError


def train_command(
    config: Path = typer.Argument(..., exists=True, dir_okay=False, help="YAML or TOML training config (see docs/training.md)."),
    overrides: list[str] = typer.Argument(
        None, metavar="[KEY=VALUE]...", help="Settings that replace the file's, e.g. learning_rate=1e-3 loss.kind=step."
    ),
    fresh: bool = typer.Option(False, "--fresh", help="Start over; what the output directory holds is archived beside it."),
    force: bool = typer.Option(False, "--force", help="Resume the checkpoint even if the config differs in settings that matter."),
) -> None:
    """Run (or resume) on-policy distillation as CONFIG describes."""
    from opd.distill.checks import check_before_loading
    from opd.distill.config import load_config, recorded_config
    from opd.distill.distributed import launch_env
    from opd.distill.interrupt import TrainingInterrupted
    from opd.distill.resume import archive_output, resumable_checkpoint
    from opd.distill.train import train

    overrides = list(overrides or [])
    main_rank = launch_env().rank == 0
    console.quiet = not main_rank  # under torchrun, rank 0 speaks for the job
    try:
        settings = load_config(config, settings=overrides)
        check_before_loading(settings, where=str(config))
        previous = None if fresh else resumable_checkpoint(settings.output_dir, recorded_config(settings), force=force)
        archived = archive_output(settings.output_dir) if fresh and main_rank else None
    except OpdError as exc:
        fail(str(exc))
    console.print(f"[bold]opd train[/] {config}: {settings.suite} with {settings.loss.kind} loss, student {settings.student}")
    done = _announce_start(settings.output_dir, previous, archived, settings.updates)
    resume_hint = shlex.join([opd_command(), "train", str(config), *overrides, *(["--force"] if force else [])])  # never --fresh
    origin = {"config_file": str(config.resolve()), "overrides": overrides}
    with training_progress(console, total=settings.updates, done=done) as progress:
        try:
            result = train(settings, resume=not fresh, force=force, progress=progress, origin=origin)
        except TrainingInterrupted as exc:
            console.print(f"{exc.signal_name}: stopped after update {exc.update}; checkpoint {exc.checkpoint}", soft_wrap=True)
            console.print(f"resume with: {resume_hint}", soft_wrap=True, highlight=False)
            raise typer.Exit(130) from None
        except KeyboardInterrupt:
            console.print(f"interrupted: the update in flight was abandoned; resume from the last checkpoint with: {resume_hint}")
            raise typer.Exit(130) from None
        except OpdError as exc:
            fail(str(exc))
    console.print(
        f"done: {result.updates} updates, {result.labelled_tokens:,} teacher-labelled tokens, {result.skipped_updates} skipped; "
        f"held-out success {result.final_eval.describe()}\n"
        f"checkpoint: {result.checkpoint}\nmetrics: {Path(settings.output_dir) / 'metrics.jsonl'}",
        soft_wrap=True,
    )
    if result.critique_usage is not None:
        console.print(f"critic: {describe_usage(result.critique_usage)}")


def _announce_start(output_dir: str, previous: Path | None, archived: Path | None, updates: int) -> int:
    """Say what the run starts from; returns the updates already done."""
    if archived is not None:
        console.print(f"fresh start: the previous contents of {output_dir} were archived to {archived}", soft_wrap=True)
    if previous is None:
        return 0
    state: dict[str, Any] = json.loads((previous / "state.json").read_text())
    console.print(f"resuming from {previous} (update {state['update']} of {updates}); --fresh starts over", soft_wrap=True)
    return int(state["update"])
