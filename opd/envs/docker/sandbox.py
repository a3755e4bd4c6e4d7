"""``DockerSandbox``: the :class:`~opd.envs.sandbox.Sandbox` protocol in a hardened, warm container.

Tools run on the host (they are trusted code: the suite's own functions) and
reach the container through this protocol; what they run *inside* the
sandbox, through :meth:`DockerSandbox.exec`, is the model's code. Every exec
goes through the container's serving supervisor (``connection.py``), which
kills the command's whole process group at the deadline and caps its output.

A ``DockerSandbox`` does not own its container: a :class:`SandboxPool` does
(it created it, or attached to a compose-started one), and an env only borrows
the sandbox. ``close()`` therefore only marks it unusable.

Failures split as everywhere in opd: what the model caused (a timeout, a crash,
an out-of-memory kill, a full disk) is an :class:`ExecResult` the model reads;
what the infrastructure caused (the container is gone, the engine refuses) is
a :class:`~opd.errors.SandboxError`.
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

import docker
import docker.errors

from opd.envs.docker.connection import SupervisorConnection
from opd.envs.docker.engine import ReplyError
from opd.envs.sandbox import ExecLimits, ExecResult, ToolStatus, cap_output, relative_path
from opd.errors import SandboxError, ToolError

__all__ = ["DockerSandbox"]

log = logging.getLogger(__name__)

GRACE_S = 5.0  # the host waits this long past a command's timeout before it stops trusting the container
_BYTES_PER_CHAR = 4  # UTF-8 worst case: the supervisor keeps enough bytes for max_output_chars characters
# What the model reads of a command's output: C0 (but newline, tab, CR), DEL and the 8-bit C1 controls become U+FFFD.
_CONTROL = {c: "\ufffd" for c in (*range(32), *range(0x7F, 0xA0)) if chr(c) not in "\n\t\r"}


def _file_deadline(limits: ExecLimits | None) -> float:
    """How long a file operation may take: the call's time limit (plus the grace every request gets), or a setup's default."""
    return (limits or ExecLimits()).timeout_s + GRACE_S


class DockerSandbox:
    """One warm container, driven through one long-lived supervisor. Isolated: no network, read-only root, no capabilities."""

    isolated = True

    def __init__(self, client: docker.DockerClient, container_id: str, *, kind: str, name: str = "") -> None:
        self._client = client
        self.container_id = container_id
        self.kind = kind
        self.name = name or container_id[:12]
        self._closed = False
        self._connection = SupervisorConnection(client, container_id)  # one serving supervisor, started on first use

    def __repr__(self) -> str:
        return f"DockerSandbox({self.name!r}, kind={self.kind!r})"

    @property
    def client(self) -> docker.DockerClient:
        """The engine the container runs on."""
        return self._client

    def describe(self) -> dict[str, Any]:
        """What an episode record keeps of the sandbox it ran in."""
        return {"container": self.name, "kind": self.kind, "engine": self._client.api.base_url}

    def __deepcopy__(self, memo: dict[int, Any]) -> DockerSandbox:
        # A handle to a container owned by a pool: copies (gymnasium deep-copies make() kwargs) share it.
        return self

    def exec(self, argv: Sequence[str], limits: ExecLimits, *, stdin: str | None = None) -> ExecResult:
        """Run ``argv`` in /work as the sandbox user; kill its process group at ``limits.timeout_s``."""
        self._check_open()
        start = time.perf_counter()
        max_bytes = limits.max_output_chars * _BYTES_PER_CHAR
        request = {"op": "exec", "argv": list(argv), "stdin": stdin, "timeout_s": limits.timeout_s, "max_bytes": max_bytes}
        try:
            reply = self._request(request, deadline_s=limits.timeout_s + GRACE_S, max_reply_bytes=2 * max_bytes + 65_536)
        except ReplyError as exc:
            # The supervisor itself was killed or hung: the command made the container unusable. Restart it so the
            # rest of the episode has a working sandbox, and tell the model what it lost.
            log.warning("sandbox %s: %s; restarting it", self.name, exc)
            self.recycle()
            status = ToolStatus.TIMEOUT if exc.timed_out else ToolStatus.NONZERO_EXIT
            message = f"Error: {exc}. The sandbox was restarted; files written so far are gone."
            return ExecResult(message, status, duration_s=time.perf_counter() - start)
        return self._exec_result(reply, limits, time.perf_counter() - start)

    def read_file(self, path: str, *, max_bytes: int = 1 << 20, limits: ExecLimits | None = None) -> bytes:
        self._check_open()
        request = {"op": "read", "path": relative_path(path), "max_bytes": max_bytes}
        reply = self._request(request, deadline_s=_file_deadline(limits), max_reply_bytes=2 * max_bytes + 4096)
        if "error" in reply:
            raise ToolError(f"cannot read {reply['error']}")
        return base64.b64decode(reply["content"])

    def write_file(self, path: str, content: str | bytes, *, limits: ExecLimits | None = None) -> None:
        self.write_files({path: content}, limits=limits)

    def write_files(self, files: Mapping[str, str | bytes], *, limits: ExecLimits | None = None) -> None:
        """Write several files in one round trip (a suite's setup writes a whole directory tree this way)."""
        self._check_open()
        items = [
            {"path": relative_path(path), "content": base64.b64encode(data.encode() if isinstance(data, str) else data).decode("ascii")}
            for path, data in files.items()
        ]
        reply = self._request({"op": "write", "files": items}, deadline_s=_file_deadline(limits), max_reply_bytes=65_536)
        if "error" in reply:
            raise ToolError(f"cannot write {reply['error']}")

    def reset(self) -> None:
        """Kill every process the sandbox user runs, empty /work, /tmp and /dev/shm and remove its SysV IPC objects;
        restart the container if that fails."""
        self._check_open()
        if self._try_reset():
            return
        self.recycle()
        if not self._try_reset():
            raise SandboxError(f"Sandbox {self.name} is still not clean after a restart; giving it up.")

    def recycle(self) -> None:
        """Restart the container: every process dies and the tmpfs mounts come back empty (seconds, not minutes)."""
        log.info("sandbox %s: restarting the container", self.name)
        self._connection.close()  # its server dies with the restart
        try:
            self._client.api.restart(self.container_id, timeout=0)
        except docker.errors.NotFound as exc:
            raise SandboxError(f"Sandbox container {self.name} no longer exists; the pool must replace it.") from exc
        except docker.errors.APIError as exc:
            raise SandboxError(f"Could not restart sandbox container {self.name}: {exc}") from exc

    def is_running(self) -> bool:
        try:
            return bool(self._client.api.inspect_container(self.container_id)["State"]["Running"])
        except docker.errors.NotFound:
            return False

    def close(self) -> None:
        """Stop lending this sandbox out; its pool removes (or keeps) the container. Its supervisor exits."""
        self._closed = True
        self._connection.close()

    def _try_reset(self) -> bool:
        try:
            reply = self._request({"op": "reset"}, deadline_s=15, max_reply_bytes=1 << 20)
        except (ReplyError, SandboxError) as exc:
            log.warning("sandbox %s: reset failed (%s)", self.name, exc)
            return False
        if reply.get("leftover_processes") or reply.get("leftover_files") or reply.get("leftover_ipc"):
            log.warning("sandbox %s: reset left %s", self.name, reply)
            return False
        return True

    def _request(self, request: dict[str, Any], *, deadline_s: float, max_reply_bytes: int) -> dict[str, Any]:
        try:
            return self._connection.request(request, deadline_s=deadline_s, max_reply_bytes=max_reply_bytes)
        except ReplyError:
            raise
        except SandboxError as exc:
            # The engine refused the exec. If the container stopped, no command can run there again this episode.
            if not self.is_running():
                raise SandboxError(f"Sandbox container {self.name} died mid-episode: {exc}") from exc
            raise

    def _exec_result(self, reply: dict[str, Any], limits: ExecLimits, duration_s: float) -> ExecResult:
        text = base64.b64decode(reply["output"]).decode("utf-8", errors="replace").translate(_CONTROL)
        text, truncated = cap_output(text, limits.max_output_chars)
        if reply["dropped"]:
            truncated = True
            text += f"\n[output truncated: {reply['dropped']} more bytes]"
        code = reply["exit_code"]
        if reply["timed_out"]:
            status = ToolStatus.TIMEOUT
            text += f"\n[timed out after {limits.timeout_s:g} s; the command and its children were killed]"
        elif code == 0:
            status = ToolStatus.OK
        else:
            status = ToolStatus.NONZERO_EXIT
            if code == -9:
                text += "\n[killed (SIGKILL): out of memory, or too many processes]"
            else:
                text += f"\n[exit code {code}]"
        return ExecResult(text, status, exit_code=code, truncated=truncated, duration_s=duration_s)

    def _check_open(self) -> None:
        if self._closed:
            raise SandboxError(f"Sandbox {self.name} was closed; borrow another from the pool.")
