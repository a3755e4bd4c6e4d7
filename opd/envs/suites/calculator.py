"""``calculator``: arithmetic that takes 2-4 dependent tool calls.

Each task is an expression tree; every inner node is one tool call, and a node
can only be computed once its operands' calls have returned, so later calls use
earlier results. The scripted expert reads those results from the observations
(it never evaluates the expression itself) and picks at random, seeded, among
the equally right choices: which ready node to compute next and the operand
order of ``add`` and ``multiply``. With ``expert="deterministic"`` it has one
right action per state instead (the first ready node, operands as written), the
setting in which plain on-policy distillation has the least over SFT to gain.

``turns=2`` (or 3) makes each task a conversation: after the agent's answer the
user follows up with one more operation on that result ("Then multiply by 7."),
so the second turn's first call depends on the first turn's outcome; each turn
is graded on its own result and the conversation succeeds when every turn does.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from opd.envs.registry import register_suite
from opd.envs.suite import Task, ToolSuite, Turn, Verdict
from opd.envs.tool_calls import FinalAnswer, ToolCalls, single_call
from opd.envs.tools import ToolContext, tool
from opd.errors import ConfigError, ToolError

Difficulty = Literal["easy", "medium", "hard"]
_OPERATIONS = {"easy": 2, "medium": 3, "hard": 4}
_SYMBOLS = {"add": "+", "subtract": "-", "multiply": "*", "divide": "/"}
_COMMUTATIVE = {"add", "multiply"}
_PROMPT = "Compute {expression} using the calculator tools, one operation per call. Reply with only the final number."
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")
_FOLLOW_UPS = {
    "add": "Then add {c}.",
    "subtract": "Then subtract {c}.",
    "multiply": "Then multiply by {c}.",
    "divide": "Then divide by {c}.",
}
_FOLLOW_UP_INSTRUCTIONS = " Use the calculator tools and reply with only the final number."


@tool
def add(a: float, b: float) -> float:
    """Add two numbers.

    Args:
        a: The first addend.
        b: The second addend.
    """
    return a + b


@tool
def subtract(a: float, b: float) -> float:
    """Subtract b from a.

    Args:
        a: The number to subtract from.
        b: The number to subtract.
    """
    return a - b


@tool
def multiply(a: float, b: float) -> float:
    """Multiply two numbers.

    Args:
        a: The first factor.
        b: The second factor.
    """
    return a * b


@tool
def divide(a: float, b: float) -> float:
    """Divide a by b.

    Args:
        a: The dividend.
        b: The divisor (not zero).
    """
    if b == 0:
        raise ToolError("division by zero")
    return a / b


class CalculatorTasks:
    """Random expression trees with a fixed number of operations; with ``turns`` > 1, one more operation per follow-up."""

    def __init__(self, operations: int, *, terse: bool = False, max_value: int | None = None, turns: int = 1) -> None:
        self.operations = operations
        self.terse = terse
        self.max_value = max_value  # if set, operands and every intermediate result lie in [0, max_value]
        self.turns = turns  # user turns: the expression, then one operation on the last result per follow-up

    def sample(self, rng: np.random.Generator) -> Task:
        while (task := self._try_sample(rng)) is None:
            pass  # only with max_value: a draw that cannot stay in range is redrawn
        return task

    def _try_sample(self, rng: np.random.Generator) -> Task | None:
        # Pool of (text, value, ref); combining two entries adds one node, so n+1 leaves give n nodes.
        pool: list[tuple[str, int, dict[str, int]]] = []
        for _ in range(self.operations + 1):
            value = self._operand(rng)
            pool.append((str(value), value, {"const": value}))
        nodes: list[dict[str, Any]] = []
        while len(pool) > 1:
            i, j = (int(k) for k in rng.choice(len(pool), size=2, replace=False))
            (left_text, left, left_ref), (right_text, right, right_ref) = pool[i], pool[j]
            if not (results := self._results_in_range(left, right)):
                return None
            op = str(rng.choice(list(results)))
            value = results[op]
            nodes.append({"op": op, "args": [left_ref, right_ref]})
            combined = (f"({left_text} {_SYMBOLS[op]} {right_text})", value, {"node": len(nodes) - 1})
            pool = [p for k, p in enumerate(pool) if k not in (i, j)] + [combined]
        text, value, _ = pool[0]
        expression = text[1:-1]
        answers, follow_ups = [value], []
        for _ in range(self.turns - 1):
            if (step := self._follow_up(rng, nodes, answers[-1])) is None:
                return None
            follow_ups.append(step[0])
            answers.append(step[1])
        conversation = {"turn_answers": answers} if self.turns > 1 else {}
        return Task(
            id=f"calc-{self.operations}-" + hashlib.sha1(" ".join([expression, *follow_ups]).encode()).hexdigest()[:10],
            prompt=f"Compute {expression}." if self.terse else _PROMPT.format(expression=expression),
            answer=answers[-1],
            data={"expression": expression, "nodes": nodes, **conversation},
            follow_ups=tuple(follow_ups),
        )

    def _operand(self, rng: np.random.Generator) -> int:
        return int(rng.integers(1, 13 if self.max_value is None else min(13, self.max_value + 1)))

    def _results_in_range(self, left: int, right: int) -> dict[str, int]:
        """The operations allowed on (left, right) whose result stays in [0, max_value] (all of them without max_value)."""
        results = _results(left, right)
        return results if self.max_value is None else {op: v for op, v in results.items() if 0 <= v <= self.max_value}

    def _follow_up(self, rng: np.random.Generator, nodes: list[dict[str, Any]], last: int) -> tuple[str, int] | None:
        """Append one node applying an operation to the last result; its user message and value (None: out of range)."""
        operand = self._operand(rng)
        if not (results := self._results_in_range(last, operand)):
            return None
        op = str(rng.choice(list(results)))
        nodes.append({"op": op, "args": [{"node": len(nodes) - 1}, {"const": operand}]})
        message = _FOLLOW_UPS[op].format(c=operand)
        return (message if self.terse else message + _FOLLOW_UP_INSTRUCTIONS), results[op]


def _results(left: int, right: int) -> dict[str, int]:
    """The result of each operation allowed on (left, right); division only when exact."""
    results = {"add": left + right, "subtract": left - right, "multiply": left * right}
    if right not in (0, 1) and left % right == 0:
        results["divide"] = left // right
    return results


def verify(task: Task, answer: str, context: ToolContext) -> Verdict:
    """The answer's last number against this user turn's result (the whole expression's in a one-turn task)."""
    expected = task.data["turn_answers"][context.user_turn] if "turn_answers" in task.data else task.answer
    numbers = _NUMBER.findall(answer)
    if not numbers:
        return Verdict(0.0, False, "The answer contains no number.")
    got = float(numbers[-1])
    if abs(got - float(expected)) <= 1e-6 * max(1.0, abs(float(expected))):
        return Verdict(1.0, True, "Correct.")
    return Verdict(0.0, False, f"Expected {expected}, got {numbers[-1]}.")


class CalculatorExpert:
    """Computes the tree bottom-up, reading each intermediate result from the observations."""

    def __init__(self, *, deterministic: bool = False) -> None:
        self.deterministic = deterministic  # one right action per state: the first ready node, operands in written order

    def act(self, task: Task, history: Sequence[Turn], rng: np.random.Generator) -> ToolCalls | FinalAnswer:
        user_turn = sum(isinstance(turn.action, FinalAnswer) for turn in history)  # each earlier answer was followed up
        # The first turn's tree, then one node per follow-up: this turn's answer is node `goal`.
        goal = len(task.data["nodes"]) - len(task.data.get("turn_answers", [None])) + user_turn
        nodes = task.data["nodes"][: goal + 1]
        done = _completed_nodes(nodes, history)
        if goal in done:
            return FinalAnswer(_format_number(done[goal]))
        ready = [i for i, node in enumerate(nodes) if i not in done and all("const" in ref or ref["node"] in done for ref in node["args"])]
        index = ready[0] if self.deterministic else ready[int(rng.integers(len(ready)))]
        op = nodes[index]["op"]
        a, b = (_value(ref, done) for ref in nodes[index]["args"])
        if op in _COMMUTATIVE and not self.deterministic and rng.random() < 0.5:
            a, b = b, a
        return single_call(op, a=a, b=b)


def _completed_nodes(nodes: list[dict[str, Any]], history: Sequence[Turn]) -> dict[int, float]:
    """Match each past successful call to the node it computed; map node -> observed result."""
    done: dict[int, float] = {}
    for turn in history:
        if not isinstance(turn.action, ToolCalls):
            continue
        for call, output in zip(turn.action.calls, turn.observation.split("\n"), strict=False):
            if not _NUMBER.fullmatch(output.strip()):
                continue
            for i, node in enumerate(nodes):
                if i in done or node["op"] != call.name or any("node" in r and r["node"] not in done for r in node["args"]):
                    continue
                operands = [_value(ref, done) for ref in node["args"]]
                given = [call.arguments.get("a"), call.arguments.get("b")]
                if given == operands or (node["op"] in _COMMUTATIVE and given == operands[::-1]):
                    done[i] = float(output)
                    break
    return done


def _value(ref: dict[str, int], done: dict[int, float]) -> int | float:
    value = ref["const"] if "const" in ref else done[ref["node"]]
    return int(value) if float(value).is_integer() else value


def _format_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(value)


@register_suite("calculator")
def calculator_suite(
    difficulty: Difficulty = "medium",
    prompt_style: Literal["full", "terse"] = "full",
    max_value: int | None = None,
    expert: Literal["random", "deterministic"] = "random",
    turns: int = 1,
) -> ToolSuite:
    """Arithmetic with add/subtract/multiply/divide tools; easy, medium, hard = 2, 3, 4 dependent calls.

    ``prompt_style="terse"`` poses "Compute (3 + 4) * 5." without instructions, and ``max_value=99`` keeps
    every operand and intermediate result in [0, 99]: fewer and more frequent tokens for tiny models that
    learn the protocol from demonstrations rather than from the prompt. ``expert="deterministic"`` makes the
    scripted expert take the one canonical action in each state instead of a random right one. ``turns=2`` (or
    3) adds follow-up user turns, each one more operation on the previous answer ("Then multiply by 7.").
    """
    if difficulty not in _OPERATIONS:
        raise ConfigError(f"difficulty must be one of {list(_OPERATIONS)}, got {difficulty!r}.")
    if prompt_style not in ("full", "terse"):
        raise ConfigError(f"prompt_style must be 'full' or 'terse', got {prompt_style!r}.")
    if expert not in ("random", "deterministic"):
        raise ConfigError(f"expert must be 'random' or 'deterministic', got {expert!r}.")
    if turns not in (1, 2, 3):
        raise ConfigError(f"turns (user turns per conversation) must be 1, 2 or 3, got {turns!r}.")
    return ToolSuite(
        name="calculator",
        tools=(add, subtract, multiply, divide),
        tasks=CalculatorTasks(_OPERATIONS[difficulty], terse=prompt_style == "terse", max_value=max_value, turns=turns),
        verify=verify,
        expert=CalculatorExpert(deterministic=expert == "deterministic"),
        max_turns=_OPERATIONS[difficulty] + 4 + 3 * (turns - 1),  # per follow-up: its call, its answer and one spare
        system_prompt=(
            "You are a careful calculator agent. Use the tools for every arithmetic operation, one call per turn, "
            "and reply with only the final number when you are done."
        ),
        description=calculator_suite.__doc__ or "",
    )
