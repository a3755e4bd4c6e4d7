"""A user's suite over the test MCP server (tests/mcp_kv_server.py, over stdio): store a value, verified by reading it back."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from opd.envs import FinalAnswer, Task, ToolSuite, Verdict, register_suite
from opd.envs.mcp_suite import McpServer, mcp_suite
from opd.envs.tool_calls import single_call
from opd.errors import ToolError

SERVER = McpServer.stdio(sys.executable, str(Path(__file__).with_name("mcp_kv_server.py")))
KEYS = ["apples", "pears", "plums", "figs"]


class StoreTasks:
    def sample(self, rng: np.random.Generator) -> Task:
        key, value = KEYS[int(rng.integers(len(KEYS)))], int(rng.integers(1, 20))
        return Task(id=f"{key}-{value}", prompt=f"store {value} under {key}", answer=value, data={"key": key})


class StoreExpert:
    def act(self, task, history, rng):
        return FinalAnswer("done") if history else single_call("put", key=task.data["key"], value=task.answer)


def verify(task: Task, answer: str, ctx) -> Verdict:
    """Graded on the server's state, not the text: read the key back through the episode's connection."""
    try:
        stored = ctx.state["mcp"].call("get", {"key": task.data["key"]})
    except ToolError:
        stored = None
    ok = stored == str(task.answer)
    return Verdict(float(ok), ok, f"{task.data['key']} holds {stored}")


@register_suite("kv_mcp")
def kv_mcp_suite(fresh_per_episode: bool = True) -> ToolSuite:
    return mcp_suite(
        "kv_mcp", SERVER, tasks=StoreTasks(), verify=verify, expert=StoreExpert(), max_turns=3, fresh_per_episode=fresh_per_episode
    )
