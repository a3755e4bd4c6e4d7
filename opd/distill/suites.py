"""The ``suites:`` section of the training config: user suite modules to import, and the train/eval split.

The config key carries the user's suite modules to every process, so
``torchrun -m opd train run.yaml`` finds the suite on each rank without a
launcher script. The split decides which tasks training draws and which the
evaluation draws (see :mod:`opd.envs.splits`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from opd.envs import make_suite
from opd.envs.plugins import import_suite_modules

__all__ = ["SuitesConfig", "TaskSplits", "resolve_config_paths", "task_splits"]


@dataclasses.dataclass(frozen=True)
class SuitesConfig:
    modules: tuple[str, ...] = ()  # suite modules (`shop_suites`) or files/directories (`suites/shop.py`) imported on every rank first
    split: bool | None = None  # train on the train split, evaluate on the eval split; None: when the suite's task set is fixed

    def load(self) -> None:
        """Import the modules (relative paths were resolved against the config file when it was read)."""
        import_suite_modules(self.modules)


@dataclasses.dataclass(frozen=True)
class TaskSplits:
    """The suite options training and evaluation each use: the configured ones plus the split."""

    train: str  # "train" or "all"
    eval: str  # "eval" or "all"

    def options(self, suite_options: Mapping[str, Any], which: str) -> dict[str, Any]:
        split = self.train if which == "train" else self.eval
        return {**suite_options, **({"split": split} if split != "all" else {})}


def task_splits(suite: str, suite_options: Mapping[str, Any], config: SuitesConfig) -> TaskSplits:
    """``train``/``eval`` when the config asks for a split (or, by default, when the suite's task set is fixed)."""
    split = make_suite(suite, **suite_options).splits_tasks if config.split is None else config.split
    return TaskSplits("train", "eval") if split else TaskSplits("all", "all")


def resolve_config_paths(data: Mapping[str, Any], base: Path) -> dict[str, Any]:
    """Paths in a config file are relative to the file: ``store``, ``output_dir``, ``suites.modules``, and model directories.

    A relative ``student`` or ``teacher`` is taken from beside the config when a
    directory of that name is there, else left alone (it may be a hub name).
    A database URL is left alone.
    """
    resolved = dict(data)
    for key in ("store", "output_dir"):
        value = resolved.get(key)
        if isinstance(value, str) and "://" not in value and not Path(value).expanduser().is_absolute():
            resolved[key] = str(base / value)
    for key in ("student", "teacher"):
        value = resolved.get(key)
        if isinstance(value, str) and not Path(value).is_absolute() and (base / value).is_dir():
            resolved[key] = str(base / value)
    suites = resolved.get("suites")
    if isinstance(suites, Mapping) and isinstance(suites.get("modules"), list | tuple):
        modules = [_relative_module(str(m), base) for m in suites["modules"]]
        resolved["suites"] = {**suites, "modules": tuple(modules)}
    return resolved


def _relative_module(spec: str, base: Path) -> str:
    """A path-like module spec (a separator or ``.py``) joined to ``base``; a module name unchanged."""
    looks_like_path = "/" in spec or spec.endswith(".py") or spec.startswith(".")
    if looks_like_path and not Path(spec).expanduser().is_absolute():
        return str(base / spec)
    if not looks_like_path and (base / spec).is_dir():  # a package directory beside the config
        return str(base / spec)
    return spec
