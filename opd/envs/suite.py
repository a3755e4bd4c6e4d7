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

from opd.envs.sandbox import Sandbox
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

    @property
    def tool_schemas(self) -> list[dict[str, Any]]:
        return [t.schema for t in self.tools]


class JsonlTasks:
    """Tasks from a JSONL file, one object per line: ``{"id", "prompt", "answer", "data"?}``.

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
                    tasks.append(Task(id=str(row["id"]), prompt=row["prompt"], answer=row.get("answer"), data=row.get("data", {})))
                except (json.JSONDecodeError, KeyError, TypeError) as exc:
                    raise ConfigError(
                        f"{self.path}:{number}: expected a JSON object with 'id' and 'prompt' ({exc.__class__.__name__}: {exc})."
                    ) from exc
        return tasks

    def sample(self, rng: np.random.Generator) -> Task:
        return self.tasks[int(rng.integers(len(self.tasks)))]
