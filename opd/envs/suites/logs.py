"""``logs``: find, count and archive service logs with tools that each run inside the sandbox.

The same log trees as ``files``, but instead of a free-form shell the model
gets four narrow tools, each one fixed command run in the container with the
model's arguments as data (``grep -rlF``, ``ls``, ``grep -cF``, ``mv``): a
suite a small model can learn, whose every tool call still crosses into
Docker. Tasks take 2-4 dependent turns (the second needs the path the first
found); the verifier reads the container's final state, not the model's claim.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from opd.envs.registry import register_suite
from opd.envs.sandbox import ExecLimits, Sandbox, relative_path
from opd.envs.suite import Task, ToolSuite, Turn, Verdict
from opd.envs.suites.files import FilesTasks
from opd.envs.suites.files import setup as write_log_tree
from opd.envs.tool_calls import FinalAnswer, ToolCalls, single_call
from opd.envs.tools import ToolContext, tool
from opd.errors import ConfigError, ToolError

Difficulty = Literal["easy", "medium", "hard"]
ARCHIVE = "archive"


def _path(path: str) -> str:
    checked = relative_path(path)
    if checked.startswith("-"):
        raise ToolError(f"path must not start with '-': got {path!r}")
    return checked


def _run(ctx: ToolContext, argv: list[str]) -> str:
    result = ctx.sandbox.exec(argv, ctx.limits)
    if result.exit_code not in (0, 1):  # grep: 1 means "no match", which is an answer, not an error
        raise ToolError(result.output.strip() or f"{argv[0]} failed")
    return result.output


@tool(needs="sandbox")
def search(text: str, ctx: ToolContext) -> str:
    """List the files under logs/ that contain a text.

    Args:
        text: The exact text to look for, e.g. "INC-1234".
    """
    found = _run(ctx, ["grep", "-rlF", "--", text, "logs"]).split()
    return "\n".join(sorted(found)) if found else "No file contains it."


@tool(needs="sandbox")
def list_dir(path: str, ctx: ToolContext) -> str:
    """List the names in a directory.

    Args:
        path: The directory, relative to the working directory, e.g. "logs".
    """
    listing = ctx.sandbox.exec(["ls", "-1", "--", _path(path)], ctx.limits)
    if not listing.ok:
        raise ToolError(f"cannot list {path!r}")
    return listing.output.strip() or "(empty)"


@tool(needs="sandbox")
def count_lines(path: str, text: str, ctx: ToolContext) -> str:
    """Count the lines of a file that contain a text.

    Args:
        path: The file, relative to the working directory, e.g. "logs/api.log".
        text: The exact text to look for, e.g. "ERROR".
    """
    return _run(ctx, ["grep", "-cF", "--", text, _path(path)]).strip()


@tool(needs="sandbox")
def archive(path: str, ctx: ToolContext) -> str:
    """Move a file into the directory archive/ (made if missing), keeping its name.

    Args:
        path: The file to move, relative to the working directory.
    """
    source = _path(path)
    moved = ctx.sandbox.exec(["sh", "-c", 'mkdir -p "$1" && mv -- "$2" "$1/"', "archive", ARCHIVE, source], ctx.limits)
    if not moved.ok:
        raise ToolError(f"cannot archive {path!r}: {moved.output.strip()}")
    return f"Moved {source} to {ARCHIVE}/."


class LogsTasks:
    """The ``files`` suite's log trees, with prompts for these tools."""

    def __init__(self, difficulty: Difficulty, incidents: int) -> None:
        self.difficulty = difficulty
        self._trees = FilesTasks(difficulty, incidents)

    def sample(self, rng: np.random.Generator) -> Task:
        task = self._trees.sample(rng)
        incident = task.data["incident"]
        prompt = {
            "easy": f"Which log mentions {incident}? Answer with its path.",
            "medium": f"How many ERROR lines has the log that mentions {incident}? Answer with the number.",
            "hard": f"Archive the log that mentions {incident}, then answer with its number of ERROR lines.",
        }[self.difficulty]
        return dataclasses.replace(task, id=task.id.replace("files-", "logs-", 1), prompt=prompt)


def verify(task: Task, answer: str, ctx: ToolContext) -> Verdict:
    expected: dict[str, Any] = task.answer
    given = answer.strip().rstrip(".")
    if task.data["difficulty"] == "easy":
        ok = given.removeprefix("./") == expected["path"]
        return Verdict(float(ok), ok, "Correct." if ok else f"Expected {expected['path']}, got {given[:60]!r}.")
    counted = given == str(expected["errors"])
    if task.data["difficulty"] == "medium":
        return Verdict(float(counted), counted, "Correct." if counted else f"Expected {expected['errors']}, got {given[:40]!r}.")
    archived = _archived(expected["path"], ctx.sandbox)
    checks = {"the ERROR count": counted, "the log moved to archive/": archived}
    missing = [what for what, ok in checks.items() if not ok]
    reason = "All done." if not missing else "Not done: " + "; ".join(missing) + "."
    return Verdict(sum(checks.values()) / len(checks), not missing, reason)


def _archived(path: str, sandbox: Sandbox) -> bool:
    """The container's state, not the model's claim: the log is in archive/ and no longer where it was."""
    name = path.rsplit("/", 1)[-1]
    return sandbox.exec(["test", "-f", f"{ARCHIVE}/{name}", "-a", "!", "-e", path], ExecLimits(timeout_s=10)).ok


class LogsExpert:
    """Finds the log by searching at once or after listing logs/ (at random), counts, archives (hard), answers."""

    def act(self, task: Task, history: Sequence[Turn], rng: np.random.Generator) -> ToolCalls | FinalAnswer:
        done = {turn.action.calls[0].name: turn.observation for turn in history if isinstance(turn.action, ToolCalls)}
        incident, difficulty = task.data["incident"], task.data["difficulty"]
        if "search" not in done:
            if "list_dir" not in done and not history and rng.random() < 0.5:
                return single_call("list_dir", path="logs")
            return single_call("search", text=incident)
        path = done["search"].strip().splitlines()[0]
        if difficulty == "easy":
            return FinalAnswer(path)
        if "count_lines" not in done:
            return single_call("count_lines", path=path, text=" ERROR ")
        if difficulty == "hard" and "archive" not in done:
            return single_call("archive", path=path)
        return FinalAnswer(done["count_lines"].strip())


@register_suite("logs")
def logs_suite(difficulty: Difficulty = "medium", incidents: int = 9000) -> ToolSuite:
    """Find, count and archive logs with four narrow tools that run in a Docker sandbox; 2-4 dependent turns.

    ``incidents``: how many distinct incident ids tasks draw from (INC-1000 onwards). A word-level
    model has one token per id, so fewer ids mean a smaller vocabulary (``opd bootstrap logs -o
    incidents=100 --numbers=-1099:99``); the model must still copy the id from the prompt.
    """
    if difficulty not in ("easy", "medium", "hard"):
        raise ConfigError(f"difficulty must be one of ['easy', 'medium', 'hard'], got {difficulty!r}.")
    if not isinstance(incidents, int) or not 1 <= incidents <= 9000:
        raise ConfigError(f"incidents must be between 1 and 9000 (ids INC-1000 to INC-9999), got {incidents!r}.")
    return ToolSuite(
        name="logs",
        tools=(search, list_dir, count_lines, archive),
        tasks=LogsTasks(difficulty, incidents),
        verify=verify,
        setup=write_log_tree,
        expert=LogsExpert(),
        max_turns=6,
        requires_isolation=True,  # every call runs in the container, where the logs are
        sandbox_kind="shell",
        system_prompt="Use the tools, one call per turn, to work with the logs in the working directory; then answer.",
        description=logs_suite.__doc__ or "",
    )
