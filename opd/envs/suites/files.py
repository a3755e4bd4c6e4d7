"""``files``: multi-step shell and file-system work in a sandbox full of log files.

At reset the sandbox's work directory gets a small tree of service logs; one
file mentions an incident id. The model must find that file (the right second
command depends on what the first one printed), count its ERROR lines, and on
hard tasks write a report file and move the log into ``archive/``. The
verifier checks the answer and, for hard tasks, the sandbox's files, not what
the model claims. Commands are model-written shell, so the suite requires an
isolating sandbox (``opd.envs.docker``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np

from opd.envs.registry import register_suite
from opd.envs.sandbox import ExecLimits, ExecResult, Sandbox
from opd.envs.suite import Task, ToolSuite, Turn, Verdict
from opd.envs.tool_calls import FinalAnswer, ToolCalls, single_call
from opd.envs.tools import ToolContext, tool
from opd.errors import ConfigError, ToolError

Difficulty = Literal["easy", "medium", "hard"]
_SERVICES = ["api", "auth", "billing", "cache", "db", "gateway", "mailer", "queue", "search", "worker"]
_LEVELS = ["INFO", "INFO", "INFO", "WARN", "ERROR"]
_PATH = re.compile(r"^[\w./-]+$")


@tool(needs="isolation")
def shell(command: str, ctx: ToolContext) -> ExecResult:
    """Run a bash command in the working directory and return its output (stdout and stderr together).

    Standard tools are available (ls, cat, grep, find, wc, sed, awk, mkdir, mv). There is no network access.

    Args:
        command: The command line to run, e.g. "grep -rl timeout logs".
    """
    return ctx.sandbox.exec(["bash", "-c", command], ctx.limits)


@tool(needs="sandbox")
def read_file(path: str, ctx: ToolContext) -> str:
    """Return the text of a file (at most 64 KB of it).

    Args:
        path: The file's path relative to the working directory.
    """
    return ctx.sandbox.read_file(_checked(path), max_bytes=65_536, limits=ctx.limits).decode("utf-8", errors="replace")


@tool(needs="sandbox")
def write_file(path: str, content: str, ctx: ToolContext) -> str:
    """Create or replace a file, creating its parent directories.

    Args:
        path: The file's path relative to the working directory.
        content: The complete new text of the file.
    """
    ctx.sandbox.write_file(_checked(path), content, limits=ctx.limits)
    return f"Wrote {len(content)} characters to {path}."


def _checked(path: str) -> str:
    if not _PATH.match(path) or path.startswith("/") or ".." in path.split("/"):
        raise ToolError(f"path must be relative to the working directory, without '..': got {path!r}")
    return path


class FilesTasks:
    def __init__(self, difficulty: Difficulty, incidents: int = 9000) -> None:
        self.difficulty = difficulty
        self.incidents = incidents  # incident ids are INC-1000 .. INC-(999 + incidents)

    def sample(self, rng: np.random.Generator) -> Task:
        services = [str(s) for s in rng.choice(_SERVICES, size=int(rng.integers(4, 8)), replace=False)]
        incident = f"INC-{1000 + int(rng.integers(self.incidents))}"  # the same draws as integers(1000, 10000) at 9000
        target = services[int(rng.integers(len(services)))]
        files, errors = {}, 0
        for service in services:
            lines = []
            for i in range(int(rng.integers(20, 60))):
                level = _LEVELS[int(rng.integers(len(_LEVELS)))]
                code = f"E{int(rng.integers(100, 1000))}"
                lines.append(f"2024-03-{1 + i % 28:02d} 12:{i % 60:02d}:00 {level} {service} code={code}")
                errors += service == target and level == "ERROR"
            if service == target:
                lines.insert(int(rng.integers(len(lines))), f"2024-03-15 09:30:00 WARN {service} incident={incident} opened")
            files[f"logs/{service}.log"] = "\n".join(lines) + "\n"
        found = f"logs/{target}.log"
        prompt = {
            "easy": f"Which file under logs/ mentions incident {incident}? Reply with its path only.",
            "medium": f"Find the log file under logs/ that mentions incident {incident} and count its ERROR lines. "
            "Reply with the number only.",
            "hard": f"Find the log file under logs/ that mentions incident {incident}, count its ERROR lines, write that "
            "number to report.txt, then move the log file into a directory archive/ (keeping its name). Reply 'done'.",
        }[self.difficulty]
        return Task(
            id=f"files-{self.difficulty}-{incident}-{target}",
            prompt=prompt,
            answer={"path": found, "errors": errors},
            data={"files": files, "incident": incident, "difficulty": self.difficulty},
        )


def setup(task: Task, sandbox: Sandbox) -> None:
    """Write the task's log tree into the freshly reset sandbox (in one round trip where the sandbox offers it)."""
    files: Mapping[str, str] = task.data["files"]
    write_files = getattr(sandbox, "write_files", None)
    if write_files is not None:
        write_files(files)
        return
    for path, text in files.items():
        sandbox.write_file(path, text)


def verify(task: Task, answer: str, ctx: ToolContext) -> Verdict:
    expected: dict[str, Any] = task.answer
    given = answer.strip().rstrip(".")
    difficulty = task.data["difficulty"]
    if difficulty == "easy":
        ok = given.removeprefix("./") == expected["path"]
        return Verdict(float(ok), ok, "Correct." if ok else f"Expected {expected['path']}, got {given[:60]!r}.")
    if difficulty == "medium":
        ok = given == str(expected["errors"])
        return Verdict(float(ok), ok, "Correct." if ok else f"Expected {expected['errors']}, got {given[:40]!r}.")
    return _verify_hard(expected, ctx.sandbox)


def _verify_hard(expected: dict[str, Any], sandbox: Sandbox) -> Verdict:
    name = expected["path"].split("/")[-1]
    try:
        report = sandbox.read_file("report.txt", max_bytes=100).decode("utf-8", errors="replace").strip()
    except ToolError:
        report = None
    moved = sandbox.exec(["test", "-f", f"archive/{name}", "-a", "!", "-e", expected["path"]], ExecLimits(timeout_s=10)).ok
    checks = {"report.txt holds the ERROR count": report == str(expected["errors"]), f"{name} moved to archive/": moved}
    passed = sum(checks.values())
    missing = [what for what, ok in checks.items() if not ok]
    reason = "All done." if not missing else "Not done: " + "; ".join(missing) + "."
    return Verdict(passed / len(checks), passed == len(checks), reason)


class FilesExpert:
    """Searches, counts, then (hard) writes the report and moves the file; picks grep or find at random."""

    def act(self, task: Task, history: Sequence[Turn], rng: np.random.Generator) -> ToolCalls | FinalAnswer:
        facts = _facts(history)
        incident, difficulty = task.data["incident"], task.data["difficulty"]
        if "path" not in facts:
            search = [f"grep -rl {incident} logs", f"find logs -name '*.log' -exec grep -l {incident} {{}} +"]
            return single_call("shell", command=search[int(rng.integers(2))])
        if difficulty == "easy":
            return FinalAnswer(facts["path"])
        if "errors" not in facts:
            return single_call("shell", command=f"grep -c ' ERROR ' {facts['path']}")
        if difficulty == "medium":
            return FinalAnswer(facts["errors"])
        if not facts.get("reported"):
            return single_call("write_file", path="report.txt", content=facts["errors"] + "\n")
        if not facts.get("moved"):
            return single_call("shell", command=f"mkdir -p archive && mv {facts['path']} archive/")
        return FinalAnswer("done")


def _facts(history: Sequence[Turn]) -> dict[str, Any]:
    """What the expert learned from its earlier commands' output."""
    facts: dict[str, Any] = {}
    for turn in history:
        if not isinstance(turn.action, ToolCalls) or turn.observation.startswith("Error"):
            continue
        call = turn.action.calls[0]
        command = str(call.arguments.get("command", ""))
        if call.name == "shell" and command.startswith(("grep -rl", "find logs")):
            facts["path"] = turn.observation.strip().splitlines()[0]
        elif call.name == "shell" and command.startswith("grep -c"):
            facts["errors"] = turn.observation.strip()
        elif call.name == "write_file":
            facts["reported"] = True
        elif call.name == "shell" and command.startswith("mkdir -p archive"):
            facts["moved"] = True
    return facts


@register_suite("files")
def files_suite(difficulty: Difficulty = "medium") -> ToolSuite:
    """Find, count and archive log files with shell commands in a Docker sandbox; 2, 3 or 5 dependent steps."""
    if difficulty not in ("easy", "medium", "hard"):
        raise ConfigError(f"difficulty must be one of ['easy', 'medium', 'hard'], got {difficulty!r}.")
    return ToolSuite(
        name="files",
        tools=(shell, read_file, write_file),
        tasks=FilesTasks(difficulty),
        verify=verify,
        setup=setup,
        expert=FilesExpert(),
        max_turns=10,
        requires_isolation=True,
        sandbox_kind="shell",
        system_prompt=(
            "You are a careful operator working in a Linux shell. Use the tools, one call per turn, to inspect "
            "and change files in the working directory; then reply as the task asks."
        ),
        description=files_suite.__doc__ or "",
    )
