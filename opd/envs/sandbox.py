"""Where tools run their commands: the ``Sandbox`` protocol and the non-isolating local backend.

A sandbox offers what a container offers: run a command with a timeout and an
output cap, read and write files in its work directory, be reset between
episodes so that nothing one episode leaves is seen by the next, and be closed
when done. Running a *tool* (validation, its time limit, its output cap) is
the tool side's job (``opd.envs.tool_runner``); this module imports nothing of it. Its lifetime belongs to whoever created it (a
pool, a test, the CLI); an env only borrows one.

The Docker backend (``opd.envs.docker``) implements the same protocol with real
isolation. :class:`LocalSandbox` does **not** isolate anything.
"""

from __future__ import annotations

import dataclasses
import os
import posixpath
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

from opd.errors import ToolError

__all__ = ["ExecLimits", "ExecResult", "LocalSandbox", "Sandbox", "ToolStatus", "cap_output", "relative_path"]


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
    """Runs commands and holds files; reset between episodes; closed by its owner.

    Paths are relative to the work directory: an absolute path or one that
    climbs out with ``..`` is refused with a ToolError, and so is anything but
    a regular file, so that a FIFO cannot stall a call.
    """

    isolated: bool  # True only if model-written code cannot reach the host, network or next episode

    def exec(self, argv: Sequence[str], limits: ExecLimits, *, stdin: str | None = None) -> ExecResult:
        """Run a command in the sandbox's work directory."""
        ...

    def read_file(self, path: str, *, max_bytes: int = 1 << 20, limits: ExecLimits | None = None) -> bytes:
        """The first ``max_bytes`` of a regular file under the work directory; ToolError if it cannot be read."""
        ...

    def write_file(self, path: str, content: str | bytes, *, limits: ExecLimits | None = None) -> None:
        """Create or replace a regular file (and its parent directories) under the work directory; ToolError if refused."""
        ...

    def reset(self) -> None: ...

    def close(self) -> None: ...


def relative_path(path: str) -> str:
    """``path`` normalised, if it names something under the work directory; a ToolError saying why not otherwise."""
    normal = posixpath.normpath(path) if path else ""
    if not path or "\x00" in path or path.startswith("/") or normal == ".." or normal.startswith("../") or normal == ".":
        raise ToolError(f"path must name a file under the working directory (relative, without climbing out with '..'): got {path!r}")
    return normal


def cap_output(text: str, max_chars: int) -> tuple[str, bool]:
    """Cut ``text`` to ``max_chars`` with a visible marker; say whether it was cut."""
    if len(text) <= max_chars:
        return text, False
    dropped = len(text) - max_chars
    return f"{text[:max_chars]}\n[output truncated: {dropped} more characters]", True


class LocalSandbox:
    """Runs commands in a temporary directory of this machine. **It does not isolate.**

    For trusted, pure-Python tools (a calculator, an in-memory lookup), which
    need no sandbox at all, and trusted commands. Commands run as this user
    with this user's network and file-system access; only their process group
    is killed on timeout. Use the Docker backend for anything a model writes.
    """

    isolated = False

    def __init__(self) -> None:
        self._workdir = Path(tempfile.mkdtemp(prefix="opd-local-"))

    @property
    def workdir(self) -> Path:
        return self._workdir

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

    def read_file(self, path: str, *, max_bytes: int = 1 << 20, limits: ExecLimits | None = None) -> bytes:
        target = self._workdir / relative_path(path)
        try:
            # Non-blocking, so that opening a FIFO returns at once; then only a regular file is read.
            fd = os.open(target, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
            with open(fd, "rb") as f:
                if not stat.S_ISREG(os.fstat(fd).st_mode):
                    raise ToolError(f"cannot read {path!r}: not a regular file")
                return f.read(max_bytes)
        except OSError as exc:
            raise ToolError(f"cannot read {path!r}: {exc.strerror or exc}") from None

    def write_file(self, path: str, content: str | bytes, *, limits: ExecLimits | None = None) -> None:
        target = self._workdir / relative_path(path)
        try:
            if target.is_symlink() or (target.exists() and not target.is_file()):
                raise ToolError(f"cannot write {path!r}: something other than a regular file is in the way")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
        except OSError as exc:
            raise ToolError(f"cannot write {path!r}: {exc.strerror or exc}") from None

    def reset(self) -> None:
        """Empty the work directory."""
        if _empty_and_usable(self._workdir):
            return  # nothing to remove: an rmtree and mkdir cost ~3 ms per episode on ext4, a third of a tiny model's update
        shutil.rmtree(self._workdir, ignore_errors=True)
        self._workdir.mkdir(parents=True)

    def close(self) -> None:
        shutil.rmtree(self._workdir, ignore_errors=True)

    def __enter__(self) -> LocalSandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _empty_and_usable(directory: Path) -> bool:
    """Whether ``directory`` is still an empty directory (not a link) its owner may read, write and enter, as ``mkdir`` made it."""
    try:
        info = directory.lstat()
        if not stat.S_ISDIR(info.st_mode) or info.st_mode & stat.S_IRWXU != stat.S_IRWXU:
            return False
        with os.scandir(directory) as entries:
            return next(entries, None) is None
    except OSError:
        return False
