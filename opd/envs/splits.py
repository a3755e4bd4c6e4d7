"""Train / eval splits of any task source, decided per task so they never overlap.

A generated suite keeps evaluation apart from training by seed ranges, but a
fixed task set (a JSONL file, a benchmark's questions) would be sampled from the
same tasks by both. A :class:`TaskSplit` assigns every task to ``train`` or
``eval`` from the task alone: its explicit ``split`` (a JSONL row's ``"split"``
key) when it has one, else a hash of its id, so the assignment is the same on
every machine, every rank and every run, and no evaluation task id can reach
training.

:class:`SplitTasks` wraps any :class:`~opd.envs.suite.TaskSource`: a fixed set
(one that exposes its ``tasks``) is filtered once; a generator is sampled until
it yields a task of the split (deterministic, since it draws from the env's
seeded generator).
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import TYPE_CHECKING, Literal

import numpy as np

from opd.errors import ConfigError

if TYPE_CHECKING:
    from opd.envs.suite import Task, TaskSource

__all__ = ["SPLITS", "SplitName", "SplitTasks", "TaskSplit"]

SplitName = Literal["train", "eval"]
SPLITS: tuple[str, ...] = ("train", "eval", "all")  # "all": no split
_MAX_DRAWS = 10_000  # a generator that yields no task of a split in this many draws is misconfigured


@dataclasses.dataclass(frozen=True)
class TaskSplit:
    """How a suite's tasks divide into ``train`` and ``eval``."""

    eval_fraction: float = 0.2  # share of tasks (by id hash) held out for evaluation
    salt: str = ""  # another salt holds out another set of tasks
    explicit: bool = True  # a task's own ``split`` ("train"/"eval"), when set, wins over the hash

    def __post_init__(self) -> None:
        if not 0.0 < self.eval_fraction < 1.0:
            raise ConfigError(f"eval_fraction must lie strictly between 0 and 1, got {self.eval_fraction}.")

    def split_of(self, task: Task) -> SplitName:
        if self.explicit and task.split is not None:
            return task.split  # type: ignore[return-value]  (Task validates it)
        digest = hashlib.sha256(f"{self.salt}\0{task.id}".encode()).digest()
        return "eval" if int.from_bytes(digest[:8], "big") / 2**64 < self.eval_fraction else "train"


class SplitTasks:
    """The tasks of ``source`` that fall in ``split``; a task source itself."""

    def __init__(self, source: TaskSource, split: SplitName, rule: TaskSplit = TaskSplit()) -> None:
        if split not in ("train", "eval"):
            raise ConfigError(f"A split is 'train' or 'eval', got {split!r}.")
        self.source, self.split, self.rule = source, split, rule
        fixed = getattr(source, "tasks", None)
        self.tasks: tuple[Task, ...] | None = None
        if fixed is not None:
            self.tasks = tuple(t for t in fixed if rule.split_of(t) == split)
            if not self.tasks:
                raise ConfigError(
                    f"The {split} split of {type(source).__name__} is empty ({len(fixed)} tasks, eval_fraction "
                    f'{rule.eval_fraction}); add tasks, mark some with "split": "{split}", or change eval_fraction.'
                )

    def sample(self, rng: np.random.Generator) -> Task:
        if self.tasks is not None:
            return self.tasks[int(rng.integers(len(self.tasks)))]
        for _ in range(_MAX_DRAWS):
            task = self.source.sample(rng)
            if self.rule.split_of(task) == self.split:
                return task
        raise ConfigError(f"{type(self.source).__name__} gave no {self.split} task in {_MAX_DRAWS} draws; do its task ids differ?")
