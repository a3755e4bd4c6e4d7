"""Training progress for a terminal (a rich bar) or for a log file (plain timestamped lines with an ETA).

A long run is usually launched with its output redirected; a progress bar then
prints nothing for minutes, so without a terminal each update is one line:
``2026-12-01T22:41:07Z update 3/20 loss 0.4121 rollout success 25% eta 0:04:10``.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

__all__ = ["describe_update", "training_progress"]

UpdateCallback = Callable[[int, dict[str, Any]], None]


def describe_update(values: dict[str, Any]) -> str:
    status = f"loss {values['loss']:.4f}"
    if "rollout/success" in values:  # absent when every episode of the update came from the store
        status += f"  rollout success {values['rollout/success']:.0%}"
    if "eval/success" in values:
        status += f"  eval {values['eval/success']:.0%}"
    return status


@contextmanager
def training_progress(console: Console, *, total: int, done: int = 0) -> Iterator[UpdateCallback]:
    """A callback ``(update, metrics)`` that shows progress from update ``done`` to ``total``."""
    if console.is_terminal:
        with _bar(console, total=total, done=done) as callback:
            yield callback
    else:
        yield _lines(console, total=total, done=done)


@contextmanager
def _bar(console: Console, *, total: int, done: int) -> Iterator[UpdateCallback]:
    columns = (TextColumn("[bold]update"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[status]}"), TimeElapsedColumn())
    with Progress(*columns, console=console) as bar:
        task = bar.add_task("train", total=total, completed=done, status="")
        yield lambda update, values: bar.update(task, completed=update, status=describe_update(values))


def _lines(console: Console, *, total: int, done: int) -> UpdateCallback:
    started = time.monotonic()

    def show(update: int, values: dict[str, Any]) -> None:
        elapsed = time.monotonic() - started
        per_update = elapsed / max(update - done, 1)
        eta = datetime.timedelta(seconds=round(per_update * (total - update)))
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        console.print(f"{stamp} update {update}/{total}  {describe_update(values)}  eta {eta}", highlight=False, soft_wrap=True)

    return show
