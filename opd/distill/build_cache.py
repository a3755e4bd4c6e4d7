"""Directories of built models, cached on disk and only ever seen whole.

A build cut short (Ctrl-C, a crash) leaves an untrained teacher or a random
student start on disk; built in place, the next run would take it for the cache
and silently train from it. So a build goes to a private sibling directory,
gets a marker written last, and is renamed into place in one step.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

__all__ = ["is_built", "publish_build"]

_BUILT = "built"  # written last: only a directory holding it is a finished build


def is_built(directory: Path) -> bool:
    return (directory / _BUILT).is_file()


def publish_build(directory: Path, build: Callable[[Path], None]) -> None:
    """Run ``build(path)`` on a private sibling of ``directory``, then rename it to ``directory`` when whole."""
    building = directory.with_name(f"{directory.name}.building-{os.getpid()}")
    shutil.rmtree(building, ignore_errors=True)
    build(building)
    (building / _BUILT).write_text("")
    shutil.rmtree(directory, ignore_errors=True)  # a build cut short before this marker existed
    try:
        building.rename(directory)
    except OSError:
        if not is_built(directory):
            raise
        shutil.rmtree(building)  # another process finished the same build first; it built the same thing
