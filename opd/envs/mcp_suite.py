"""Tool suites from Model Context Protocol servers, through the official ``mcp`` SDK.

Many teams already expose their tools as MCP servers. :func:`mcp_suite` lists a
server's tools and turns each JSON schema into an opd tool (arguments validated
against the schema before the server sees them, see ``tool_builders``); the
user brings the task source and the verifier, as for any suite.

Transports: **stdio** (:meth:`McpServer.stdio`), either as a local process
(trusted tools only: it isolates nothing) or, with ``in_sandbox=True``, inside
the episode's Docker sandbox (``opd.envs.mcp_sandbox``: ``docker exec`` in the
borrowed container, whose hardening stays: no network, read-only root, only the
tmpfs /work and /tmp writable); and **streamable HTTP** (:meth:`McpServer.url`,
e.g. a server on loopback or in a container that publishes its port). A suite
that requires isolation refuses a stdio server that would run locally.

State: with ``fresh_per_episode=True`` (the default) every episode opens its own
connection, so a stdio server is a new process with fresh state for each episode
(a stateful server never leaks one episode into the next); an in-sandbox server
also starts on a freshly reset sandbox (empty /work), after the suite's ``setup``
wrote the task's files. An HTTP server keeps whatever state it keeps per
session. The verifier reaches the episode's connection as ``ctx.state["mcp"]``
(:meth:`McpConnection.call`).

The SDK is asynchronous; opd's envs are not. Each connection runs its client in
one task on a private event-loop thread, and calls cross over with
``run_coroutine_threadsafe``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import json
import threading
import weakref
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any

from opd.envs.sandbox import Sandbox
from opd.envs.suite import Task, TaskSource, ToolSuite, Verdict
from opd.envs.tool_builders import CONTEXT_ARGUMENT, tool_from_schema
from opd.envs.tools import Tool, ToolContext
from opd.errors import ConfigError, IsolationRequiredError, MissingPrerequisiteError, SandboxError, ToolError

__all__ = ["McpConnection", "McpServer", "listed_tools", "mcp_suite"]

STATE_KEY = "mcp"  # where the episode's connection lives in ctx.state
SANDBOX_KIND = "mcp"  # the sandbox image in-sandbox servers run in by default: opd-sandbox-mcp (scripts/build-mcp-image.sh)


@dataclasses.dataclass(frozen=True)
class McpServer:
    """Where an MCP server is: a command to start (stdio) or a streamable-HTTP URL."""

    command: Sequence[str] = ()  # argv of a stdio server, e.g. ("uvx", "mcp-server-git", "--repository", "repo")
    url: str | None = None  # a streamable-HTTP endpoint, e.g. "http://127.0.0.1:8000/mcp"
    env: Mapping[str, str] | None = None  # extra environment of a stdio server
    cwd: str | None = None  # working directory of a stdio server (in the sandbox: default /work)
    timeout_s: float = 30.0  # connecting, and each tool call
    in_sandbox: bool = False  # run the stdio command inside the episode's Docker sandbox instead of as a local process

    def __post_init__(self) -> None:
        if bool(self.command) == bool(self.url):
            raise ConfigError("An McpServer is either a command (stdio) or a url (streamable HTTP); give exactly one.")
        if self.in_sandbox and not self.command:
            raise ConfigError(f"in_sandbox=True runs a stdio command in the sandbox; {self.url!r} is a URL. Drop in_sandbox.")

    @classmethod
    def stdio(
        cls,
        *command: str,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        timeout_s: float = 30.0,
        in_sandbox: bool = False,
    ) -> McpServer:
        return cls(command=tuple(command), env=env, cwd=cwd, timeout_s=timeout_s, in_sandbox=in_sandbox)

    @classmethod
    def http(cls, url: str, *, timeout_s: float = 30.0) -> McpServer:
        return cls(url=url, timeout_s=timeout_s)

    def describe(self) -> str:
        return self.url or " ".join(self.command)

    def _target(self, sandbox: Sandbox | None) -> Any:
        from mcp import StdioServerParameters

        if self.url:
            return self.url
        if self.in_sandbox:
            from opd.envs.mcp_sandbox import DockerExecTransport

            return DockerExecTransport(sandbox, self.command, env=self.env, cwd=self.cwd)
        return StdioServerParameters(command=self.command[0], args=list(self.command[1:]), env=dict(self.env or {}) or None, cwd=self.cwd)


class McpConnection:
    """One client session to an MCP server, usable from synchronous code; ``close()`` ends it (and a stdio server).

    An in-sandbox server runs in ``sandbox`` (a Docker sandbox), which is required then.
    """

    def __init__(self, server: McpServer, *, sandbox: Sandbox | None = None) -> None:
        try:
            from mcp import Client
        except ImportError as exc:
            raise MissingPrerequisiteError("MCP suites need the mcp SDK: pip install 'opd[mcp]' (or pip install mcp).") from exc
        if server.in_sandbox and sandbox is None:
            raise ConfigError(f"The MCP server {server.describe()!r} runs in the sandbox: give McpConnection(server, sandbox=...).")
        self.server = server
        self._target = server._target(sandbox)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="opd-mcp", daemon=True)
        self._thread.start()
        self._ready: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._closing = asyncio.Event()
        self._served = asyncio.run_coroutine_threadsafe(self._serve(Client), self._loop)
        try:
            self._client = self._ready.result(timeout=server.timeout_s)
        except Exception as exc:
            self.close()
            cause = _innermost(exc)
            detail = self._target.diagnosis() if hasattr(self._target, "diagnosis") else ""
            where = f" in sandbox {sandbox.name}" if server.in_sandbox else ""  # type: ignore[attr-defined]
            message = f"Could not connect to the MCP server {server.describe()!r}{where}: {cause.__class__.__name__}: {cause}"
            raise SandboxError(message + (f" ({detail})" if detail else "")) from exc
        weakref.finalize(self, _stop_loop, self._loop, self._thread)

    async def _serve(self, client_class: Any) -> None:
        """Own the client for the connection's life: the SDK's cancel scopes must open and close in one task."""
        try:
            async with client_class(self._target, read_timeout_seconds=self.server.timeout_s) as client:
                self._ready.set_result(client)
                await self._closing.wait()
        except BaseException as exc:
            if not self._ready.done():
                self._ready.set_exception(exc)
            elif not isinstance(exc, asyncio.CancelledError):
                raise

    def list_tools(self) -> list[Any]:
        return list(self._run(lambda: self._client.list_tools()).tools)

    def call(self, name: str, arguments: Mapping[str, Any] | None = None) -> str:
        """Call tool ``name`` and return its text; a tool-reported error raises :class:`ToolError` (shown to the model).

        So does a server that refuses the request or has ended (a query may exhaust its sandbox's memory): what the
        model's call caused is an observation. A sandbox container that is gone is the infrastructure's: SandboxError.
        """
        from mcp.shared.exceptions import MCPError

        try:
            result = self._run(lambda: self._client.call_tool(name, dict(arguments or {})))
        except MCPError as exc:
            raise self._call_failed(name, exc) from exc
        text = _result_text(result)
        if result.is_error:
            raise ToolError(text or f"the MCP tool {name!r} failed without a message")
        return text

    def _call_failed(self, name: str, exc: Exception) -> Exception:
        if "Connection closed" not in str(exc):
            return ToolError(f"the MCP server refused the call to {name!r}: {exc}")
        sandbox = getattr(self._target, "sandbox", None)
        if sandbox is not None and not sandbox.is_running():
            return SandboxError(f"Sandbox {sandbox.name} died mid-episode; its MCP server {self.server.describe()!r} with it.")
        detail = self._target.ending() if hasattr(self._target, "ending") else ""
        detail = f" ({detail})" if detail else ""
        return ToolError(f"the MCP server has ended{detail}; no tool can be called for the rest of this episode")

    def close(self) -> None:
        if self._loop.is_closed():
            return
        self._loop.call_soon_threadsafe(self._closing.set)
        with contextlib.suppress(Exception):  # the session is going away either way; its errors were reported when they mattered
            self._served.result(timeout=self.server.timeout_s)
        _stop_loop(self._loop, self._thread)

    def _run(self, request: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
        if self._loop.is_closed():
            raise SandboxError(f"The connection to the MCP server {self.server.describe()!r} is closed.")
        try:
            return asyncio.run_coroutine_threadsafe(request(), self._loop).result(timeout=self.server.timeout_s + 5)
        except (TimeoutError, concurrent.futures.TimeoutError) as exc:
            raise SandboxError(f"The MCP server {self.server.describe()!r} did not answer within {self.server.timeout_s}s.") from exc
        except ConnectionError as exc:
            raise SandboxError(f"Lost the MCP server {self.server.describe()!r}: {exc}") from exc

    def __enter__(self) -> McpConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def mcp_suite(
    name: str,
    server: McpServer,
    *,
    tasks: TaskSource,
    verify: Callable[[Task, str, ToolContext], Verdict],
    tools: Sequence[str] | None = None,
    fresh_per_episode: bool = True,
    **suite_fields: Any,
) -> ToolSuite:
    """A suite whose tools are ``server``'s (or the ones named in ``tools``), with your tasks and verifier.

    ``suite_fields`` are any other :class:`ToolSuite` fields (``expert``, ``system_prompt``, ``max_turns``, ...).
    An in-sandbox server makes the suite require isolation, on the ``sandbox_kind`` image (default ``mcp``).
    """
    isolated = _check_isolation(name, server, fresh_per_episode, suite_fields)
    kind = suite_fields.setdefault("sandbox_kind", SANDBOX_KIND) if server.in_sandbox else None
    sessions = _Sessions(server, fresh_per_episode)
    listed = listed_tools(server, kind=kind or SANDBOX_KIND)
    known = {t.name: t for t in listed}
    missing = sorted(set(tools or ()) - set(known))
    if missing:
        raise ConfigError(f"MCP server {server.describe()!r} has no tool(s) {missing}; it offers {sorted(known)}.")
    chosen = [known[n] for n in tools] if tools else listed
    init_state = suite_fields.pop("init_state", None)
    user_setup = suite_fields.pop("setup", None)

    def start_episode(task: Task) -> dict[str, Any]:
        state = dict(init_state(task)) if init_state else {}
        if not server.in_sandbox:
            state[STATE_KEY] = sessions.for_episode(None)
        sessions.state = state  # an in-sandbox server's connection joins it in setup, once the episode's sandbox is ready
        return state

    def setup(task: Task, sandbox: Sandbox) -> None:
        if user_setup is not None:
            user_setup(task, sandbox)  # first: it may write the files the server reads when it starts
        if server.in_sandbox:
            sessions.state[STATE_KEY] = sessions.for_episode(sandbox)

    return ToolSuite(
        name=name,
        tools=tuple(_mcp_tool(t) for t in chosen),
        tasks=tasks,
        verify=verify,
        init_state=start_episode,
        setup=setup,
        close=sessions.close,
        requires_isolation=isolated,
        **suite_fields,
    )


def _check_isolation(name: str, server: McpServer, fresh_per_episode: bool, suite_fields: dict[str, Any]) -> bool:
    """Whether the suite requires isolation; refuses a local stdio server for a suite that does."""
    required = bool(suite_fields.pop("requires_isolation", False))
    if required and server.command and not server.in_sandbox:
        raise IsolationRequiredError(
            f"Suite {name!r} requires isolation, but its MCP server {server.describe()!r} would run as a local process, "
            "unisolated. Run it in the episode's sandbox: McpServer.stdio(..., in_sandbox=True)."
        )
    if server.in_sandbox and not fresh_per_episode:
        raise ConfigError(
            f"Suite {name!r}: an in-sandbox MCP server lives in the episode's sandbox, which is reset between episodes, "
            "so it cannot be shared by several episodes; leave fresh_per_episode=True."
        )
    return required or server.in_sandbox


_LISTINGS: dict[str, list[Any]] = {}  # tool listings by server, so that building a suite per env starts no server


def listed_tools(server: McpServer, *, kind: str = SANDBOX_KIND) -> list[Any]:
    """The server's tools (listed once per process and server); an in-sandbox one is listed in a fresh ``kind`` sandbox."""
    key = f"{server!r} {kind if server.in_sandbox else ''}"
    if key not in _LISTINGS:
        if server.in_sandbox:
            from opd.envs.mcp_sandbox import list_in_sandbox

            _LISTINGS[key] = list_in_sandbox(server, kind)
        else:
            with McpConnection(server) as connection:
                _LISTINGS[key] = connection.list_tools()
    return _LISTINGS[key]


class _Sessions:
    """One suite's connections: a new one per episode (the previous one closed first), or one shared by all its episodes."""

    def __init__(self, server: McpServer, fresh_per_episode: bool) -> None:
        self.server, self.fresh = server, fresh_per_episode
        self.state: dict[str, Any] = {}  # the current episode's state
        self._connection: McpConnection | None = None

    def for_episode(self, sandbox: Sandbox | None) -> McpConnection:
        if self._connection is not None and not self.fresh:
            return self._connection
        self.close()
        self._connection = McpConnection(self.server, sandbox=sandbox)
        return self._connection

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def _mcp_tool(listed: Any) -> Tool:
    name = listed.name

    def call(**arguments: Any) -> str:
        context: ToolContext = arguments.pop(CONTEXT_ARGUMENT)
        return context.state[STATE_KEY].call(name, arguments)

    description = (listed.description or "").strip().split("\n\n")[0]  # the summary; the schema documents the arguments
    return tool_from_schema(name, description, listed.input_schema or {"type": "object"}, call, with_context=True)


def _result_text(result: Any) -> str:
    texts = [block.text for block in result.content if getattr(block, "type", None) == "text"]
    if texts:
        return "\n".join(texts)
    if result.structured_content is not None:
        return json.dumps(result.structured_content)
    return ""


def _innermost(exc: BaseException) -> BaseException:
    """The first leaf of nested exception groups (the SDK's task groups wrap the error that matters)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _stop_loop(loop: asyncio.AbstractEventLoop, thread: threading.Thread) -> None:
    if loop.is_closed():
        return
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=10)
    if not thread.is_alive():
        loop.close()
