"""A long-lived supervisor in a container, talked to over one attached ``docker exec`` stream.

:func:`~opd.envs.docker.engine.run_request` starts a fresh supervisor per
request: two Python start-ups and an exec set-up, ~100-200 ms. A
:class:`SupervisorConnection` starts the supervisor once (``serve`` mode) and
sends every request down the same exec's stdin, reading framed replies from
its stdout, so a request costs a round trip through the engine plus whatever
the request runs. Every limit stays where it was: the supervisor kills a
command's process group at its deadline and caps its output, and the host
still reads at most ``max_reply_bytes`` and gives up at a deadline. A server
that dies (a command may ``kill -9 -1`` its own user) or misbehaves is
dropped, and the next request starts a new one.
"""

from __future__ import annotations

import contextlib
import json
import logging
import select
import threading
import time
from typing import Any

import docker
import docker.errors

from opd.envs.docker.engine import _FRAME_HEADER, SANDBOX_USER, ReplyError, _recv_exactly, supervisor_argv
from opd.errors import SandboxError

__all__ = ["SupervisorConnection"]

log = logging.getLogger(__name__)


class SupervisorConnection:
    """One container's serving supervisor; requests are serialised (one sandbox serves one episode at a time)."""

    def __init__(self, client: docker.DockerClient, container_id: str) -> None:
        self._client = client
        self.container_id = container_id
        self._lock = threading.Lock()
        self._stream: Any = None
        self._sock: Any = None
        self._stdout = bytearray()  # received and not yet consumed (the start of the next reply, at most)

    def request(self, request: dict[str, Any], *, deadline_s: float, max_reply_bytes: int) -> dict[str, Any]:
        """Send ``request`` and return the decoded reply; ReplyError (and a dropped server) if it is missing, oversized or late."""
        payload = json.dumps(request).encode("utf-8")
        with self._lock:
            if self._sock is not None and not self._idle_and_open():
                self._drop()  # the server died while idle (e.g. another pool's reset of this container killed it)
            if self._sock is None:
                self._open()
            try:
                self._sock.sendall(b"%d\n" % len(payload) + payload)
                raw = self._read_reply(time.monotonic() + deadline_s, max_reply_bytes)
            except (ReplyError, OSError) as exc:
                self._drop()
                if isinstance(exc, ReplyError):
                    raise
                raise ReplyError(f"lost the connection to the sandbox: {exc}") from exc
        try:
            return json.loads(raw)
        except ValueError as exc:
            self.close()
            raise ReplyError(f"the sandbox sent an unreadable reply ({len(raw)} bytes)") from exc

    def close(self) -> None:
        """Close the stream; the server sees end of input and exits."""
        with self._lock:
            self._drop()

    def _open(self) -> None:
        api = self._client.api
        try:
            exec_id = api.exec_create(self.container_id, [*supervisor_argv(), "serve"], stdin=True, user=SANDBOX_USER, workdir="/")["Id"]
            self._stream = api.exec_start(exec_id, socket=True)
        except docker.errors.NotFound as exc:
            raise SandboxError(f"Sandbox container {self.container_id[:12]} no longer exists: {exc.explanation}") from exc
        except docker.errors.APIError as exc:
            raise SandboxError(f"Docker Engine refused to run a command in container {self.container_id[:12]}: {exc}") from exc
        self._sock = getattr(self._stream, "_sock", self._stream)  # SocketIO over a unix or TCP socket
        self._stdout = bytearray()

    def _idle_and_open(self) -> bool:
        """An idle server sends nothing: a readable socket means it closed (or sent garbage), either way it is done."""
        try:
            readable, _, _ = select.select([self._sock], [], [], 0)
        except (OSError, ValueError):
            return False
        return not readable

    def _read_reply(self, deadline: float, limit: int) -> bytes:
        """One framed reply (``<length>\\n<json>``) from the server's stdout; stderr frames are only logged."""
        size: int | None = None
        while True:
            if size is None and b"\n" in self._stdout[:32]:
                header, _, rest = bytes(self._stdout).partition(b"\n")
                size = int(header) if header.isdigit() else -1
                if not 0 <= size <= limit:
                    raise ReplyError(f"the sandbox reply exceeded {limit} bytes (or was not framed); output was not read")
                self._stdout = bytearray(rest)
            elif size is None and len(self._stdout) >= 32:
                raise ReplyError("the sandbox sent an unframed reply")
            if size is not None and len(self._stdout) >= size:
                reply, self._stdout = bytes(self._stdout[:size]), self._stdout[size:]
                return reply
            self._receive_frame(deadline, limit)

    def _receive_frame(self, deadline: float, limit: int) -> None:
        header = _recv_exactly(self._sock, _FRAME_HEADER.size, deadline)
        if header is None:
            raise ReplyError("the sandbox process died without a reply (killed: out of memory or processes?)")
        stream_id, size = _FRAME_HEADER.unpack(header)
        if len(self._stdout) + size > limit + 32:
            raise ReplyError(f"the sandbox reply exceeded {limit} bytes; output was not read")
        body = _recv_exactly(self._sock, size, deadline)
        if body is None:
            raise ReplyError("the sandbox connection closed mid-reply")
        if stream_id == 1:
            self._stdout += body
        else:
            log.warning("sandbox supervisor stderr: %s", body[-2000:])

    def _drop(self) -> None:
        for thing in (self._sock, self._stream):
            with contextlib.suppress(Exception):  # closing a broken socket can raise anything; nothing to do about it
                thing.close()
        self._sock = self._stream = None
        self._stdout = bytearray()
