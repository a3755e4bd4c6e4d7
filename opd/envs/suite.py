"""A tool suite: tools + a task source + a verifier (+ optionally a scripted expert).

A suite is everything an environment needs to pose tasks and grade answers.
Users define their own as a small module (see docs/tool-suites.md): decorated
tool functions, tasks from a generator or a JSONL file, and a verifier.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from opd.envs.conversation import ConversationVerifier, ScriptedUser, User, mean_of_turns
from opd.envs.sandbox import Sandbox
from opd.envs.splits import SPLITS, SplitTasks, TaskSplit
from opd.envs.task import Task
from opd.envs.tool_calls import FinalAnswer, ToolCalls
from opd.envs.tools import Tool, ToolContext
from opd.errors import ConfigError

__all__ = [
    "Expert",
    "JsonlTasks",
    "Task",
    "TaskSource",
    "ToolSuite",
    "Turn",
    "Verdict",
]


@dataclasses.dataclass(frozen=True)
class Verdict:
    reward: float  # in [0, 1]
    success: bool
    reason: str = ""


@runtime_checkable
class TaskSource(Protocol):
    """Draws tasks reproducibly: the same generator state gives the same task."""

    def sample(self, rng: np.random.Generator) -> Task: ...


@dataclasses.dataclass(frozen=True)
class Turn:
    """One completed turn as an expert sees it: what was done and what came back."""

    action: ToolCalls | FinalAnswer | None  # None if the action did not parse
    observation: str


@runtime_checkable
class Expert(Protocol):
    """A scripted policy that solves a suite's tasks, for demonstrations and tests."""

    def act(self, task: Task, history: Sequence[Turn], rng: np.random.Generator) -> ToolCalls | FinalAnswer: ...


Verifier = Callable[[Task, str, ToolContext], Verdict]


@dataclasses.dataclass(frozen=True)
class ToolSuite:
    """Tools, tasks and a verifier under one name."""

    name: str
    tools: tuple[Tool, ...]
    tasks: TaskSource
    verify: Verifier  # (task, final answer, context) -> Verdict
    system_prompt: str = "You are a helpful assistant that solves tasks by calling tools."
    init_state: Callable[[Task], dict[str, Any]] = lambda task: {}  # per-episode mutable state for the tools
    setup: Callable[[Task, Sandbox], None] | None = None  # prepares the freshly reset sandbox (e.g. writes the task's files)
    expert: Expert | None = None
    max_turns: int = 8  # default turn limit of an episode; the env may override it
    requires_isolation: bool = False  # True for suites whose tools run model-written code (also implied by such a tool)
    sandbox_kind: str = "python"  # the Docker sandbox image its sandboxes come from: "python" or "shell" (docker-compose.yml)
    description: str = ""
    # How tasks divide into train and eval. None: a generated task source is kept apart by seed ranges, a fixed
    # one (a JsonlTasks) is split 80/20 by id hash; set it to split a generated suite by task id too.
    split: TaskSplit | None = None
    user: User = ScriptedUser()  # poses each follow-up user turn (default: the task's follow_ups); see opd.envs.conversation
    verify_conversation: ConversationVerifier = mean_of_turns  # grades the whole conversation from each turn's Verdict
    close: Callable[[], None] | None = None  # releases what the suite holds (e.g. an MCP connection) when its env closes

    def __post_init__(self) -> None:
        names = [t.name for t in self.tools]
        if len(set(names)) != len(names):
            raise ConfigError(f"Suite {self.name!r} has duplicate tool names: {sorted(names)}.")
        if not names:
            raise ConfigError(f"Suite {self.name!r} has no tools.")

    @property
    def needs_isolation(self) -> bool:
        """Whether an env of this suite must get an isolating sandbox: the suite says so, or one of its tools does."""
        return self.requires_isolation or any(t.needs == "isolation" for t in self.tools)

    def tool(self, name: str) -> Tool | None:
        return next((t for t in self.tools if t.name == name), None)

    def tools_for(self, task: Task) -> tuple[Tool, ...]:
        """The tools ``task`` offers: all of the suite's, or the subset it names (in the suite's order)."""
        if task.tools is None:
            return self.tools
        unknown = sorted(set(task.tools) - {t.name for t in self.tools})
        if unknown:
            raise ConfigError(
                f"Task {task.id!r} names tools {unknown} that suite {self.name!r} does not have: {[t.name for t in self.tools]}."
            )
        return tuple(t for t in self.tools if t.name in task.tools)

    @property
    def splits_tasks(self) -> bool:
        """Whether training should draw from the train split and evaluation from the eval split by default."""
        return self.split is not None or getattr(self.tasks, "tasks", None) is not None

    def with_split(self, split: str) -> ToolSuite:
        """This suite restricted to the ``train`` or ``eval`` split of its tasks (``all``: unchanged)."""
        if split == "all":
            return self
        if split not in SPLITS:
            raise ConfigError(f"Unknown split {split!r} for suite {self.name!r}; expected one of {', '.join(SPLITS)}.")
        return dataclasses.replace(self, tasks=SplitTasks(self.tasks, split, self.split or TaskSplit()))  # type: ignore[arg-type]

    @property
    def tool_schemas(self) -> list[dict[str, Any]]:
        return [t.schema for t in self.tools]


class JsonlTasks:
    """Tasks from a JSONL file, one object per line: ``{"id", "prompt", "answer", "data"?, "split"?, "follow_ups"?, "tools"?}``.

    ``split`` ("train" or "eval") pins a task to a split; tasks without it are
    split by a hash of their id (see :class:`~opd.envs.splits.TaskSplit`).

    ``sample`` draws uniformly with the generator it is given, so a seeded env
    sees the same task sequence every time.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.tasks = tuple(self._load())
        if not self.tasks:
            raise ConfigError(f"{self.path} contains no tasks.")

    def _load(self) -> list[Task]:
        if not self.path.is_file():
            raise ConfigError(f"Task file {self.path} does not exist.")
        tasks = []
        with self.path.open(encoding="utf-8") as lines:
            for number, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                    tasks.append(
                        Task(
                            id=str(row["id"]),
                            prompt=row["prompt"],
                            answer=row.get("answer"),
                            data=row.get("data", {}),
                            split=row.get("split"),
                            follow_ups=tuple(row.get("follow_ups", ())),
                            tools=tuple(row["tools"]) if row.get("tools") is not None else None,
                        )
                    )
                except (json.JSONDecodeError, KeyError, TypeError, ConfigError) as exc:
                    raise ConfigError(
                        f"{self.path}:{number}: expected a JSON object with 'id' and 'prompt' ({exc.__class__.__name__}: {exc})."
                    ) from exc
        return tasks

    def sample(self, rng: np.random.Generator) -> Task:
        return self.tasks[int(rng.integers(len(self.tasks)))]
