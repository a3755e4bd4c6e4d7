"""Deciding what a training run starts from: a fresh output directory, or a checkpoint it is safe to resume.

Resuming a checkpoint written under a different config would mix two runs in
one set of weights, metrics and run id without a word, so a difference in any
setting that shapes the run is refused, naming the settings, with ``--fresh``
(start over; the old directory is archived, not mixed with the new one) and
``--force`` (resume anyway) as the ways out. Settings that only say how long
to go on or how to report are free to change on resume.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from opd.distill.checkpoint import checkpoint_config, latest_checkpoint
from opd.errors import ConfigError

__all__ = [
    "RESUMABLE_CHANGES",
    "ResumeConflictError",
    "archive_output",
    "config_differences",
    "resumable_checkpoint",
    "starting_checkpoint",
]

logger = logging.getLogger(__name__)

# Settings a resumed run may change: how far to go, how often to report, where to run, what the run is called.
RESUMABLE_CHANGES = frozenset(
    {"updates", "max_labelled_tokens", "eval_every", "eval_episodes", "checkpoint_every", "device", "teacher_device"}
    | {"tensorboard", "run_name", "store", "origin"}
)


class ResumeConflictError(ConfigError):
    """The output directory holds a checkpoint of a run whose config differs in a setting that matters."""


def starting_checkpoint(output_dir: str | Path, config: Mapping[str, Any], *, resume: bool, force: bool) -> Path | None:
    """The checkpoint a run resumes (None: it starts from the student); without ``resume`` the old output is archived first."""
    if not resume:
        archive_output(output_dir)
        return None
    checkpoint = resumable_checkpoint(output_dir, config, force=force)
    if checkpoint is not None:
        logger.info("Resuming from %s", checkpoint)
    return checkpoint


def resumable_checkpoint(output_dir: str | Path, config: Mapping[str, Any], *, force: bool = False) -> Path | None:
    """The latest checkpoint under ``output_dir`` if ``config`` may resume it; raises :class:`ResumeConflictError` if not.

    ``force`` resumes despite differences (they are logged).
    """
    checkpoint = latest_checkpoint(Path(output_dir) / "checkpoints")
    if checkpoint is None:
        return None
    recorded = checkpoint_config(checkpoint)
    differences = config_differences(recorded, config) if recorded is not None else []
    if differences and not force:
        shown = "; ".join(differences[:6]) + (f"; and {len(differences) - 6} more" if len(differences) > 6 else "")
        raise ResumeConflictError(
            f"{output_dir} holds a checkpoint ({checkpoint.name}) of a run with a different config: {shown}. "
            "Pass --fresh to start a new run (the old directory is archived beside it), --force to resume it with the new "
            "config, or set output_dir to another directory."
        )
    if differences:
        logger.warning("Resuming %s despite config differences (--force): %s", checkpoint, "; ".join(differences))
    return checkpoint


def config_differences(recorded: Mapping[str, Any], current: Mapping[str, Any], prefix: str = "") -> list[str]:
    """``"loss.kind: 'token' -> 'step'"`` for each setting that matters and differs (nested sections compared key by key)."""
    found = []
    for key in sorted(set(recorded) | set(current)):
        if not prefix and key in RESUMABLE_CHANGES:
            continue
        old, new = recorded.get(key), current.get(key)
        if isinstance(old, Mapping) and isinstance(new, Mapping) and key != "suite_options":
            found += config_differences(old, new, prefix=f"{prefix}{key}.")
        elif old != new:
            found.append(f"{prefix}{key}: {old!r} -> {new!r}")
    return found


def archive_output(output_dir: str | Path) -> Path | None:
    """Move a non-empty ``output_dir`` aside to ``<name>.archived-<UTC time>`` so a fresh run starts with nothing of the old one."""
    output = Path(output_dir)
    if not output.is_dir() or not any(output.iterdir()):
        return None
    target = output.with_name(f"{output.name}.archived-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}")
    suffix = 1
    while target.exists():  # two fresh starts within a second
        target = target.with_name(f"{target.name.split('~')[0]}~{suffix}")
        suffix += 1
    shutil.move(str(output), str(target))
    logger.info("Archived the previous run's %s to %s", output, target)
    return target
