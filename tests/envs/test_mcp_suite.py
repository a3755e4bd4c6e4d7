"""MCP servers as suites, against a real stateful server written with the official SDK (tests/mcp_kv_server.py).

Over stdio (a process per episode, so state never leaks between episodes) and
over streamable HTTP on loopback; then ``opd train`` on it for two updates.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_training import train_two_updates
from suite_registry import restored_suite_registry

from opd.agents.tiny import expert_texts
from opd.envs import LocalSandbox, Task, ToolEnv, Verdict, play_expert
from opd.envs.mcp_suite import McpConnection, McpServer, mcp_suite
from opd.envs.plugins import import_suite_module
from opd.errors import ConfigError, IsolationRequiredError, SandboxError

TESTS = Path(__file__).parents[1]
SERVER = TESTS / "mcp_kv_server.py"
PUT_5 = '<tool_call>{"name": "put", "arguments": {"key": "a", "value": 5.0}}</tool_call>'
GET = '<tool_call>{"name": "get", "arguments": {"key": "a"}}</tool_call>'


class OneTask:
    def sample(self, rng):
        return Task(id="a5", prompt="store 5 under a", answer=5)


CONNECTIONS = []  # each verified episode's connection, to check it is closed afterwards


def read_back(task, answer, ctx) -> Verdict:
    CONNECTIONS.append(ctx.state["mcp"])
    stored = ctx.state["mcp"].call("get", {"key": "a"})
    return Verdict(float(stored == "5"), stored == "5", f"a holds {stored}")


@pytest.fixture(scope="module")
def kv_suite():
    return mcp_suite("kv", McpServer.stdio(sys.executable, str(SERVER)), tasks=OneTask(), verify=read_back)


def test_the_servers_tools_with_their_schemas(kv_suite) -> None:
    put = kv_suite.tool("put").schema["function"]
    assert put["description"] == "Store an integer under a key, replacing what was there."
    assert put["parameters"]["required"] == ["key", "value"] and put["parameters"]["properties"]["value"]["type"] == "integer"


def test_arguments_are_validated_before_the_server_sees_them_and_state_is_per_episode(kv_suite) -> None:
    env = ToolEnv(kv_suite)
    env.reset(seed=0)
    observation, *_, info = env.step('<tool_call>{"name": "put", "arguments": {"key": "a", "value": "five"}}</tool_call>')
    assert info["error_kind"] == "bad_arguments" and "argument 'value': expected integer, got 'five'" in observation
    assert env.step(GET)[4]["error_kind"] == "tool_error"  # the server's own error, shown to the model
    assert env.step(PUT_5)[0] == "stored a"  # 5.0 went through as the integer 5
    _, reward, terminated, _, info = env.step("done")
    assert terminated and reward == 1.0 and info["verdict"]["reason"] == "a holds 5"
    env.reset(seed=1)  # a new server process: nothing stored
    assert "no value under 'a'" in env.step(GET)[0]
    env.close()
    with pytest.raises(SandboxError, match="is closed"):  # the episode's server went with the env
        CONNECTIONS[-1].call("get", {"key": "a"})


def test_streamable_http_on_loopback() -> None:
    port = free_port()
    process = subprocess.Popen([sys.executable, str(SERVER), "http", str(port)], stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}/mcp"
        wait_for(port)
        suite = mcp_suite("kv_http", McpServer.http(url), tasks=OneTask(), verify=read_back, tools=["put", "get"])
        env = ToolEnv(suite)
        env.reset(seed=0)
        assert env.step(PUT_5)[0] == "stored a" and env.step("done")[1] == 1.0
        env.close()
        with McpConnection(McpServer.http(url)) as connection:  # the server's state outlives the session
            assert connection.call("get", {"key": "a"}) == "5"
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_a_server_that_is_not_there_says_so() -> None:
    with pytest.raises(SandboxError, match=r"Could not connect to the MCP server 'http://127.0.0.1:\d+/mcp'"):
        McpConnection(McpServer.http(f"http://127.0.0.1:{free_port()}/mcp", timeout_s=5))


def test_a_suite_that_requires_isolation_refuses_a_local_stdio_server() -> None:
    # Refused before any process starts; McpServer.stdio(..., in_sandbox=True) is the way (tests/envs/docker/test_mcp_in_sandbox.py).
    local = McpServer.stdio(sys.executable, str(SERVER))
    with pytest.raises(IsolationRequiredError, match=r"requires isolation, but its MCP server .* would run as a local process"):
        mcp_suite("kv", local, tasks=OneTask(), verify=read_back, requires_isolation=True)
    in_sandbox = McpServer.stdio("mcp-server-sqlite", in_sandbox=True)
    with pytest.raises(ConfigError, match="reset between episodes"):
        mcp_suite("kv", in_sandbox, tasks=OneTask(), verify=read_back, fresh_per_episode=False)
    with pytest.raises(ConfigError, match="runs in the sandbox: give McpConnection"):
        McpConnection(in_sandbox)
    with pytest.raises(SandboxError, match="needs a Docker sandbox .* got LocalSandbox"):
        McpConnection(in_sandbox, sandbox=LocalSandbox())
    with pytest.raises(ConfigError, match="is a URL"):
        McpServer(url="http://127.0.0.1:1/mcp", in_sandbox=True)


@pytest.fixture
def kv_registered() -> Iterator[None]:
    with restored_suite_registry():
        yield


@pytest.mark.slow
def test_opd_train_on_an_mcp_servers_tools(kv_registered, tmp_path: Path) -> None:
    import_suite_module(str(TESTS / "mcp_kv_suite.py"))
    env = ToolEnv("kv_mcp", fresh_per_episode=False)  # one server for the tokenizer's corpus
    assert play_expert(env, 0).success
    corpus = [*expert_texts(env, 8), "apples pears plums figs holds"]
    env.close()
    episodes = train_two_updates(tmp_path, "kv_mcp", TESTS / "mcp_kv_suite.py", corpus)
    assert len(episodes) == 4 and {e.suite for e in episodes} == {"kv_mcp"} and all(e.num_tokens > 2 for e in episodes)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(port: int, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"the MCP server did not listen on {port} within {timeout_s}s")
