"""A stdio MCP server run inside a Docker sandbox: the SDK's client over an attached ``docker exec``.

:class:`DockerExecTransport` is an ``mcp`` SDK transport. It starts the
server's command in the sandbox's container (``docker exec`` as the sandbox
user, in /work, through the engine client of the sandbox's pool, so an engine
on another host (tcp://) serves as well as the local socket) and carries JSON-RPC
lines over the exec's attached stdin and stdout. The container keeps all of
its hardening: no network, a read-only root, tmpfs /work and /tmp (the only
places the server can write, both emptied when the sandbox is reset between
episodes), no capabilities, the memory and process limits.

Closing the transport half-closes the exec's stdin (the server sees end of
input and exits, as stdio MCP servers do); a server that ignores that is
killed by the sandbox's reset, which ends every process of the sandbox user.

:func:`list_in_sandbox` lists a server's tools in a short-lived container of
its own (a suite is built before any episode has a sandbox), on the engine that
DOCKER_HOST names (or the local socket).
"""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import anyio
import anyio.to_thread

from opd.envs.docker.engine import _FRAME_HEADER, SANDBOX_USER, ReplyError, _recv_exactly
from opd.errors import SandboxError

__all__ = ["DockerExecTransport", "list_in_sandbox", "not_found_hint"]

log = logging.getLogger(__name__)

WORKDIR = "/work"  # the sandbox's tmpfs work directory (docker/sandbox/Dockerfile)
STDERR_TAIL = 4096  # how much of the server's stderr is kept, to explain a server that fails to start
EXIT_GRACE_S = 2.0  # how long a closing server gets to exit after its stdin ends


class DockerExecTransport:
    """The MCP SDK's transport to ``argv`` run by ``docker exec`` in the container of ``sandbox``."""

    def __init__(self, sandbox: Any, argv: Sequence[str], *, env: Mapping[str, str] | None = None, cwd: str | None = None) -> None:
        if not hasattr(sandbox, "container_id") or not hasattr(sandbox, "client"):
            raise SandboxError(
                f"An MCP server that runs in the sandbox needs a Docker sandbox (a container to exec into); got {type(sandbox).__name__}."
            )
        self.sandbox = sandbox
        self.argv = list(argv)
        self.env = dict(env or {})
        self.cwd = cwd or WORKDIR
        self.stderr = bytearray()  # the tail of what the server wrote to stderr
        self._exec_id: str | None = None
        self._streams: contextlib.AbstractAsyncContextManager[Any] | None = None

    async def __aenter__(self) -> Any:
        self._streams = self._connected()
        return await self._streams.__aenter__()

    async def __aexit__(self, *exc: Any) -> bool | None:
        assert self._streams is not None
        return await self._streams.__aexit__(*exc)

    def exit_code(self) -> int | None:
        """The server's exit code once it has ended (None while it runs or before it started)."""
        if self._exec_id is None:
            return None
        with contextlib.suppress(Exception):  # asked only to explain a failure; the engine may be gone too
            state = self.sandbox.client.api.exec_inspect(self._exec_id)
            return None if state["Running"] else state["ExitCode"]
        return None

    def ending(self) -> str:
        """How the server ended, for the model's observation: its exit code ("" while it runs)."""
        code = self.exit_code()
        if code is None:
            return ""
        return f"it exited with code {code}" + (" (SIGKILL: out of memory, or too many processes)" if code == 137 else "")

    def diagnosis(self) -> str:
        """Why the server did not start, for its developer: how it ended, the end of its stderr, what to build."""
        text = bytes(self.stderr).decode("utf-8", errors="replace").strip()
        hint = not_found_hint(self.argv[0], self.exit_code(), text, self.sandbox)
        return "; ".join(p for p in (self.ending(), f"stderr: {text[-1000:]}" if text else "", hint) if p)

    @contextlib.asynccontextmanager
    async def _connected(self) -> AsyncIterator[Any]:
        from mcp.shared.message import SessionMessage

        sock = await anyio.to_thread.run_sync(self._start)
        read_writer, read_stream = anyio.create_memory_object_stream[Any](0)
        write_stream, write_reader = anyio.create_memory_object_stream[SessionMessage](0)
        server_ended = anyio.Event()

        async def reader() -> None:
            try:
                async with read_writer:
                    await self._read_messages(sock, read_writer)
            except (anyio.ClosedResourceError, anyio.BrokenResourceError, OSError):
                pass  # the session or the socket went away: the read stream is closed either way
            finally:
                server_ended.set()

        async def writer() -> None:
            with contextlib.suppress(anyio.ClosedResourceError, anyio.BrokenResourceError, OSError):
                async with write_reader:
                    async for message in write_reader:
                        line = message.message.model_dump_json(by_alias=True, exclude_unset=True) + "\n"
                        await anyio.to_thread.run_sync(sock.sendall, line.encode("utf-8"))

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(reader)
            tasks.start_soon(writer)
            try:
                yield read_stream, write_stream
            finally:
                with anyio.CancelScope(shield=True):
                    await self._shut_down(sock, server_ended)
                tasks.cancel_scope.cancel()

    def _start(self) -> socket.socket:
        import docker.errors

        api = self.sandbox.client.api
        environment = [f"{key}={value}" for key, value in self.env.items()]
        try:
            self._exec_id = api.exec_create(
                self.sandbox.container_id, self.argv, stdin=True, user=SANDBOX_USER, workdir=self.cwd, environment=environment
            )["Id"]
            stream = api.exec_start(self._exec_id, socket=True)
        except docker.errors.NotFound as exc:
            raise SandboxError(f"Sandbox container {self.sandbox.name} no longer exists: {exc.explanation}") from exc
        except docker.errors.APIError as exc:
            raise SandboxError(f"Docker Engine refused to start {self.argv[0]!r} in sandbox {self.sandbox.name}: {exc}") from exc
        sock = getattr(stream, "_sock", stream)  # SocketIO over a unix or TCP socket
        sock.settimeout(None)  # an idle server sends nothing for as long as the episode thinks
        return sock

    async def _read_messages(self, sock: socket.socket, read_writer: Any) -> None:
        """Frames of docker's multiplexed stream: stdout lines are JSON-RPC messages, stderr is kept for errors."""
        import mcp.types
        from mcp.shared.message import SessionMessage

        pending = b""
        while (frame := await anyio.to_thread.run_sync(_read_frame, sock, abandon_on_cancel=True)) is not None:
            stream_id, body = frame
            if stream_id != 1:
                self.stderr = (self.stderr + body)[-STDERR_TAIL:]
                continue
            *lines, pending = (pending + body).split(b"\n")
            for line in filter(None, (raw.strip() for raw in lines)):
                try:
                    message: Any = SessionMessage(mcp.types.jsonrpc_message_adapter.validate_json(line, by_name=False))
                except ValueError as exc:  # the session reports it; the server may have printed something else to stdout
                    message = exc
                await read_writer.send(message)

    async def _shut_down(self, sock: socket.socket, server_ended: anyio.Event) -> None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_WR)  # end of the server's stdin: it exits
        with anyio.move_on_after(EXIT_GRACE_S):
            await server_ended.wait()
        if not server_ended.is_set():
            log.warning("MCP server %r in sandbox %s did not exit at the end of its input", self.argv[0], self.sandbox.name)
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)  # unblocks the reader's thread
        sock.close()


def _read_frame(sock: socket.socket) -> tuple[int, bytes] | None:
    """One frame (stream id, payload) of docker's multiplexed exec stream; None at the end of the stream.

    No deadline: an idle server sends nothing for as long as the episode thinks. A lost connection ends the stream.
    """
    try:
        header = _recv_exactly(sock, _FRAME_HEADER.size, None)
        if header is None:
            return None
        stream_id, size = _FRAME_HEADER.unpack(header)
        body = _recv_exactly(sock, size, None) if size else b""
    except ReplyError:
        return None
    return None if body is None else (stream_id, body)


def not_found_hint(command: str, exit_code: int | None, stderr: str, sandbox: Any) -> str:
    """What to do when ``command`` is not in the sandbox's image (exec reports 126/127 or "not found")."""
    if exit_code not in (126, 127) and "not found" not in stderr and "no such file" not in stderr.lower():
        return ""
    try:
        image = sandbox.client.api.inspect_container(sandbox.container_id)["Config"]["Image"]
    except Exception:  # only for the message; the container may be gone
        image = "its image"
    return (
        f"the command {command!r} is not in the sandbox image {image!r}: build an image that has it (docker/mcp/Dockerfile "
        "installs PyPI servers offline; scripts/build-mcp-image.sh builds opd-sandbox-mcp), tag it "
        "opd-sandbox-<kind>:0.1 and give the suite sandbox_kind='<kind>'"
    )


def list_in_sandbox(server: Any, kind: str) -> list[Any]:
    """``server``'s tools, listed by running it in a fresh container of the ``kind`` sandbox image (removed after)."""
    from opd.envs.docker import PoolConfig, SandboxPool
    from opd.envs.mcp_suite import McpConnection

    # attach=False: a compose-started container may be serving another run's episode, and a pool resets what it attaches to.
    with (
        SandboxPool(PoolConfig(kind=kind, size=1, attach=False)) as pool,
        pool.borrow() as sandbox,
        McpConnection(server, sandbox=sandbox) as connection,
    ):
        return connection.list_tools()
