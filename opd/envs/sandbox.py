"""Where tools run: the ``Sandbox`` protocol and the non-isolating local backend.

A sandbox runs a tool call or a command with a timeout and an output cap, can
be reset between episodes so that nothing one episode leaves is seen by the
next, and is closed when done. Its lifetime belongs to whoever created it (a
pool, a test, the CLI); an env only borrows one.

The Docker backend (``opd.envs.docker``) implements the same protocol with real
isolation. :class:`LocalSandbox` does **not** isolate anything.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from opd.errors import ToolError

if TYPE_CHECKING:
    from opd.envs.tools import Tool, ToolContext

__all__ = ["ExecLimits", "ExecResult", "LocalSandbox", "Sandbox", "ToolStatus", "cap_output"]


@dataclasses.dataclass(frozen=True)
class ExecLimits:
    timeout_s: float = 10.0  # wall-clock limit per call
    max_output_chars: int = 16_384  # longer output is cut and says so


class ToolStatus:
    OK = "ok"
    BAD_ARGUMENTS = "bad_arguments"  # the arguments did not match the tool's signature
    TOOL_ERROR = "tool_error"  # the tool raised ToolError
    TIMEOUT = "timeout"
    NONZERO_EXIT = "nonzero_exit"


@dataclasses.dataclass(frozen=True)
class ExecResult:
    """The outcome of one tool call or command, as the model will see it."""

    output: str
    status: str = ToolStatus.OK
    exit_code: int | None = None  # commands only
    truncated: bool = False
    duration_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == ToolStatus.OK


@runtime_checkable
class Sandbox(Protocol):
    """Runs tools and commands; reset between episodes; closed by its owner."""

    isolated: bool  # True only if model-written code cannot reach the host, network or next episode

    def call(self, tool: Tool, arguments: Mapping[str, Any], context: ToolContext, limits: ExecLimits) -> ExecResult:
        """Run one tool call: validate, invoke, cap output, enforce the timeout."""
        ...

    def exec(self, argv: Sequence[str], limits: ExecLimits, *, stdin: str | None = None) -> ExecResult:
        """Run a command in the sandbox's work directory."""
        ...

    def read_file(self, path: str, *, max_bytes: int = 1 << 20) -> bytes:
        """The first ``max_bytes`` of a file, ``path`` relative to the work directory; ToolError if it cannot be read."""
        ...

    def write_file(self, path: str, content: str | bytes) -> None:
        """Create or replace a file (and its parent directories) under the work directory; ToolError if refused."""
        ...

    def reset(self) -> None: ...

    def close(self) -> None: ...


def cap_output(text: str, max_chars: int) -> tuple[str, bool]:
    """Cut ``text`` to ``max_chars`` with a visible marker; say whether it was cut."""
    if len(text) <= max_chars:
        return text, False
    dropped = len(text) - max_chars
    return f"{text[:max_chars]}\n[output truncated: {dropped} more characters]", True


def run_tool_inline(tool: Tool, arguments: Mapping[str, Any], context: ToolContext, limits: ExecLimits) -> ExecResult:
    """Invoke a tool in the calling thread and turn its result or ToolError into an ExecResult."""
    from opd.envs.tools import ToolArgumentError

    start = time.perf_counter()
    exit_code, was_truncated = None, False
    try:
        value = tool(arguments, context)
        status = ToolStatus.OK
        if isinstance(value, ExecResult):  # a tool that ran a command reports its status (timeout, exit code) as is
            status, text, exit_code, was_truncated = value.status, value.output, value.exit_code, value.truncated
        else:
            text = value if isinstance(value, str) else _render_value(value)
    except ToolArgumentError as exc:
        status, text = ToolStatus.BAD_ARGUMENTS, f"Error: {exc}"
    except ToolError as exc:
        status, text = ToolStatus.TOOL_ERROR, f"Error: {exc}"
    text, truncated = cap_output(text, limits.max_output_chars)
    return ExecResult(text, status, exit_code=exit_code, truncated=truncated or was_truncated, duration_s=time.perf_counter() - start)


def _render_value(value: Any) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    return str(value)


class LocalSandbox:
    """Runs tools in this process and commands in a temporary directory. **It does not isolate.**

    For trusted, pure-Python tools (a calculator, an in-memory lookup). A tool
    runs in a worker thread so that a timeout can be reported; Python cannot
    kill a thread, so a timed-out tool keeps running in the background until it
    returns and its worker is abandoned. Commands run as this user with this
    user's network and file-system access; only their process group is killed
    on timeout. Use the Docker backend for anything a model writes.
    """

    isolated = False

    def __init__(self) -> None:
        self._workdir = Path(tempfile.mkdtemp(prefix="opd-local-"))
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None

    @property
    def workdir(self) -> Path:
        return self._workdir

    def call(self, tool: Tool, arguments: Mapping[str, Any], context: ToolContext, limits: ExecLimits) -> ExecResult:
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="opd-tool")
        start = time.perf_counter()
        future = self._executor.submit(run_tool_inline, tool, arguments, context, limits)
        try:
            return future.result(timeout=limits.timeout_s)
        except concurrent.futures.TimeoutError:
            # The worker is stuck in the tool; abandon it so the next call gets a fresh one.
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
            return ExecResult(
                f"Error: tool {tool.name!r} timed out after {limits.timeout_s:g} s.",
                ToolStatus.TIMEOUT,
                duration_s=time.perf_counter() - start,
            )

    def exec(self, argv: Sequence[str], limits: ExecLimits, *, stdin: str | None = None) -> ExecResult:
        start = time.perf_counter()
        proc = subprocess.Popen(
            list(argv),
            cwd=self._workdir,
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group, so a timeout kills its children too
        )
        try:
            raw, _ = proc.communicate(stdin.encode() if stdin is not None else None, timeout=limits.timeout_s)
            status = ToolStatus.OK if proc.returncode == 0 else ToolStatus.NONZERO_EXIT
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raw, _ = proc.communicate()
            status = ToolStatus.TIMEOUT
        text, truncated = cap_output(raw.decode("utf-8", errors="replace"), limits.max_output_chars)
        if status == ToolStatus.TIMEOUT:
            text += f"\n[timed out after {limits.timeout_s:g} s]"
        return ExecResult(text, status, exit_code=proc.returncode, truncated=truncated, duration_s=time.perf_counter() - start)

    def read_file(self, path: str, *, max_bytes: int = 1 << 20) -> bytes:
        try:
            with open(self._workdir / path, "rb") as f:
                return f.read(max_bytes)
        except OSError as exc:
            raise ToolError(f"cannot read {path!r}: {exc.strerror or exc}") from None

    def write_file(self, path: str, content: str | bytes) -> None:
        target = self._workdir / path
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
        except OSError as exc:
            raise ToolError(f"cannot write {path!r}: {exc.strerror or exc}") from None

    def reset(self) -> None:
        """Empty the work directory."""
        shutil.rmtree(self._workdir, ignore_errors=True)
        self._workdir.mkdir(parents=True)

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
        shutil.rmtree(self._workdir, ignore_errors=True)

    def __enter__(self) -> LocalSandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
