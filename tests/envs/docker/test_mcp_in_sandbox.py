"""A PyPI MCP server (mcp-server-sqlite) run inside the episode's Docker sandbox, on the opd-sandbox-mcp image.

`make test` builds the image (scripts/build-mcp-image.sh, from wheels the host
downloads). The server runs by docker exec in a hardened container: its tools
become opd tools, an episode is stateful over several calls and the next one
starts from an empty database, the server can write only to the tmpfs, and
``opd train`` runs on it for two updates.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import mcp  # noqa: F401  (imported before a registry restore, which drops what was imported meanwhile: one SDK copy)
import pytest
from cli_training import train_two_updates
from conftest import REPO_ROOT
from suite_registry import restored_suite_registry

from opd.agents.tiny import expert_texts
from opd.envs import ToolEnv, ToolSuite, make_suite, play_expert
from opd.envs.docker import SandboxPool
from opd.envs.mcp_suite import McpConnection, McpServer
from opd.envs.plugins import import_suite_module
from opd.errors import IsolationRequiredError, SandboxError

pytestmark = pytest.mark.docker
TESTS = REPO_ROOT / "tests"
SUITE_MODULE = TESTS / "mcp_sqlite_suite.py"


def call(name: str, query: str) -> str:
    return f'<tool_call>{{"name": "{name}", "arguments": {{"query": "{query}"}}}}</tool_call>'


@pytest.fixture(scope="module")
def mcp_pool(docker_client) -> Iterator[SandboxPool]:
    with SandboxPool(kind="mcp", size=1, client=docker_client) as pool:
        yield pool


@pytest.fixture(scope="module")
def sqlite_suite(docker_client) -> ToolSuite:
    # Registered only while it is built: the registry's restore also drops every module imported meanwhile.
    with restored_suite_registry():
        import_suite_module(str(SUITE_MODULE))
        return make_suite("sqlite_mcp")


@pytest.fixture
def registry_restored() -> Iterator[None]:
    with restored_suite_registry():
        yield


def test_the_servers_tools_become_opd_tools_of_an_isolated_suite(sqlite_suite) -> None:
    assert sqlite_suite.needs_isolation and sqlite_suite.sandbox_kind == "mcp"
    assert {"create_table", "write_query", "read_query", "list_tables", "describe_table"} <= {t.name for t in sqlite_suite.tools}
    read = sqlite_suite.tool("read_query").schema["function"]
    assert read["parameters"]["required"] == ["query"] and read["parameters"]["properties"]["query"]["type"] == "string"
    with pytest.raises(IsolationRequiredError, match="needs an isolating sandbox"):  # never a local process
        ToolEnv(sqlite_suite)


def test_a_stateful_episode_in_the_sandbox_and_a_fresh_database_for_the_next(sqlite_suite, mcp_pool) -> None:
    with mcp_pool.borrow() as sandbox:
        env = ToolEnv(sqlite_suite, sandbox=sandbox, max_turns=8)
        env.reset(seed=0)
        item, qty = env.task.data["item"], env.task.answer
        observation, *_, info = env.step('<tool_call>{"name": "read_query", "arguments": {}}</tool_call>')
        assert info["error_kind"] == "bad_arguments" and "query" in observation  # validated before the server sees it
        assert env.step(call("create_table", "CREATE TABLE sales (item TEXT, qty INTEGER)"))[0] == "Table created successfully"
        assert "affected_rows" in env.step(call("write_query", f"INSERT INTO sales VALUES ('{item}', {qty})"))[0]
        assert env.step(call("read_query", "SELECT qty FROM sales"))[0] == f"[{{'qty': {qty}}}]"
        assert sandbox.read_file("shop.db").startswith(b"SQLite format 3")  # the database is in the sandbox's /work
        _, reward, terminated, _, info = env.step("done")
        assert terminated and reward == 1.0, info["verdict"]
        env.reset(seed=1)  # a reset sandbox and a new server: no table
        assert env.step(call("list_tables", "x"))[4]["error_kind"] == "bad_arguments"  # list_tables takes no query
        assert env.step('<tool_call>{"name": "list_tables", "arguments": {}}</tool_call>')[0] == "[]"
        assert env.step("done")[1] == 0.0
        env.close()
        expert_env = ToolEnv(sqlite_suite, sandbox=sandbox)
        assert play_expert(expert_env, seed=2).success
        expert_env.close()


def test_the_server_keeps_the_sandboxs_hardening_and_says_what_is_missing(mcp_pool) -> None:
    with mcp_pool.borrow() as sandbox:
        outside = McpServer.stdio("mcp-server-sqlite", "--db-path", "/opt/shop.db", in_sandbox=True, timeout_s=20)
        with pytest.raises(SandboxError, match=r"(?s)exited with code 1; stderr: .*unable to open database file"):
            McpConnection(outside, sandbox=sandbox)  # the root file system is read-only; only /work and /tmp are writable
        absent = McpServer.stdio("mcp-server-git", "--repository", "/work", in_sandbox=True, timeout_s=20)
        with pytest.raises(SandboxError, match="the command 'mcp-server-git' is not in the sandbox image 'opd-sandbox-mcp:0.1'"):
            McpConnection(absent, sandbox=sandbox)


def test_a_query_that_exhausts_the_sandboxs_memory_ends_the_server_and_the_model_reads_that(sqlite_suite, mcp_pool) -> None:
    one_gigabyte = (
        "SELECT length(group_concat(s)) FROM (WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n+1 FROM c WHERE n < 1000) "
        "SELECT printf('%.1000000c', 'x') AS s FROM c)"
    )  # a 1 GB string in a sandbox of 512 MiB: the kernel kills the server
    with mcp_pool.borrow() as sandbox:
        env = ToolEnv(sqlite_suite, sandbox=sandbox)
        env.reset(seed=0)
        observation, *_, info = env.step(call("read_query", one_gigabyte))
        assert info["error_kind"] == "tool_error" and "the MCP server has ended (it exited with code 137 (SIGKILL" in observation
        _, reward, terminated, _, info = env.step("done")  # the episode goes on; the verifier finds no database
        assert terminated and reward == 0.0 and info["verdict"]["reason"] == f"{env.task.data['item']}: []"
        env.reset(seed=1)
        assert env.step('<tool_call>{"name": "list_tables", "arguments": {}}</tool_call>')[0] == "[]"  # a new server
        env.close()


@pytest.mark.slow
def test_opd_train_on_a_pypi_server_in_sandboxes(sqlite_suite, mcp_pool, registry_restored, tmp_path: Path) -> None:
    with mcp_pool.borrow() as sandbox:
        env = ToolEnv(sqlite_suite, sandbox=sandbox)
        corpus = expert_texts(env, 2)
        env.close()
    corpus = [*corpus, "apples pears plums figs sales"]
    episodes = train_two_updates(tmp_path, "sqlite_mcp", SUITE_MODULE, corpus, sandbox={"size": 2})
    assert len(episodes) == 4 and {e.suite for e in episodes} == {"sqlite_mcp"} and all(e.num_tokens > 2 for e in episodes)
    assert all(e.sandbox and e.sandbox.get("kind") == "mcp" for e in episodes)  # every episode ran in an mcp sandbox
