"""A user's suite over a PyPI MCP server run inside the episode's Docker sandbox: mcp-server-sqlite (opd-sandbox-mcp image).

Each episode is stateful over several tool calls (create a table, then insert
into it) and graded on the database, read back through the episode's own
connection; the database lives in the sandbox's /work, so every episode starts
from an empty one.
"""

from __future__ import annotations

import ast

import numpy as np

from opd.envs import FinalAnswer, Task, ToolSuite, Verdict, register_suite
from opd.envs.mcp_suite import McpServer, mcp_suite
from opd.envs.tool_calls import single_call
from opd.errors import ToolError

SERVER = McpServer.stdio("mcp-server-sqlite", "--db-path", "/work/shop.db", in_sandbox=True)
ITEMS = ["apples", "pears", "plums", "figs"]
CREATE = "CREATE TABLE sales (item TEXT, qty INTEGER)"


class SaleTasks:
    def sample(self, rng: np.random.Generator) -> Task:
        item, qty = ITEMS[int(rng.integers(len(ITEMS)))], int(rng.integers(1, 20))
        prompt = f"create the sales table and record {qty} {item}"
        return Task(id=f"{item}-{qty}", prompt=prompt, answer=qty, data={"item": item})


class SaleExpert:
    def act(self, task, history, rng):
        if not history:
            return single_call("create_table", query=CREATE)
        if len(history) == 1:
            return single_call("write_query", query=f"INSERT INTO sales VALUES ('{task.data['item']}', {task.answer})")
        return FinalAnswer("done")


def recorded(ctx, item: str) -> list[int]:
    """The quantities the episode's database holds for ``item`` ([] when there is no such table yet)."""
    try:
        rows = ctx.state["mcp"].call("read_query", {"query": f"SELECT qty FROM sales WHERE item = '{item}'"})
    except ToolError:
        return []
    if rows.startswith("Database error"):  # this server reports SQL errors as text, not as tool errors
        return []
    return [row["qty"] for row in ast.literal_eval(rows)]  # and rows as a Python list of dicts


def verify(task: Task, answer: str, ctx) -> Verdict:
    """Graded on the server's database, not on the text of the answer."""
    quantities = recorded(ctx, task.data["item"])
    ok = quantities == [task.answer]
    return Verdict(float(ok), ok, f"{task.data['item']}: {quantities}")


@register_suite("sqlite_mcp")
def sqlite_mcp_suite() -> ToolSuite:
    return mcp_suite("sqlite_mcp", SERVER, tasks=SaleTasks(), verify=verify, expert=SaleExpert(), max_turns=4)
