"""A suite package of the kind a user writes, installed on a temporary path with an ``opd.suites`` entry point.

It is not on ``sys.path`` until a test puts it there: a test proves that opd finds
it (entry point, module option, ``OPD_SUITES``), never that the test imported it.
Its tasks are a fixed JSONL set, so training on it exercises the train/eval split.
"""

from __future__ import annotations

import json
from pathlib import Path

PACKAGE = "prices_suite"
SUITE = "prices"

SUITE_SOURCE = '''
"""Look a fruit's price up and reply with it: a fixed JSONL task set."""
from pathlib import Path

from opd.envs import FinalAnswer, JsonlTasks, ToolCall, ToolCalls, ToolContext, ToolSuite, Verdict, register_suite, tool
from opd.errors import ToolError


@tool
def price(fruit: str, ctx: ToolContext) -> int:
    """Return the price of a fruit in cents.

    Args:
        fruit: The fruit's name, e.g. "apple".
    """
    if fruit not in ctx.task.data["prices"]:
        raise ToolError(f"unknown fruit {fruit!r}")
    return ctx.task.data["prices"][fruit]


class Expert:
    def act(self, task, history, rng):
        if not history:
            return ToolCalls((ToolCall("price", {"fruit": task.data["fruit"]}),))
        return FinalAnswer(history[-1].observation.strip())


def verify(task, answer, ctx):
    ok = answer.strip() == str(task.answer)
    return Verdict(float(ok), ok, "" if ok else f"expected {task.answer}")


@register_suite("prices")
def prices_suite() -> ToolSuite:
    return ToolSuite(
        name="prices",
        tools=(price,),
        tasks=JsonlTasks(Path(__file__).with_name("tasks.jsonl")),
        verify=verify,
        expert=Expert(),
        max_turns=3,
        description="a user's suite from a separate package",
    )
'''

FRUITS = ["apple", "pear", "plum", "fig", "kiwi", "lime", "date", "melon", "grape", "peach"]


def task_rows(count: int = 40) -> list[dict]:
    rows = []
    for i in range(count):
        fruit = FRUITS[i % len(FRUITS)]
        prices = {f: 10 + (i * 7 + j * 13) % 90 for j, f in enumerate(FRUITS)}
        rows.append({"id": f"p{i:03d}", "prompt": f"price {fruit}", "answer": prices[fruit], "data": {"fruit": fruit, "prices": prices}})
    return rows


def install(directory: Path, *, entry_point: bool = True) -> Path:
    """Write the package (and, with ``entry_point``, its dist-info as pip would) under ``directory``; return ``directory``."""
    package = directory / PACKAGE
    package.mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text(SUITE_SOURCE)
    (package / "tasks.jsonl").write_text("".join(json.dumps(row) + "\n" for row in task_rows()))
    if entry_point:
        info = directory / f"{PACKAGE}-0.1.dist-info"
        info.mkdir(exist_ok=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {PACKAGE}\nVersion: 0.1\n")
        (info / "entry_points.txt").write_text(f"[opd.suites]\n{SUITE} = {PACKAGE}\n")
    return directory
