"""Judges for the test chat server: what a strong API model would say about a calculator step.

``calculator_judge`` reads the critique request opd sends (the task, the
episode so far, the step to grade), works the arithmetic out from the task's
expression, and scores the step: a call that computes one of the expression's
operations on the right operands, or the right final number, is good. It
stands in for a large grading model, which this machine cannot run; the
request, HTTP, parsing and training paths it exercises are the real ones.
"""

from __future__ import annotations

import ast
import json
import re
from typing import Any

_OPS = {ast.Add: "add", ast.Sub: "subtract", ast.Mult: "multiply", ast.Div: "divide"}
_COMMUTATIVE = {"add", "multiply"}
GOOD = {9: 0.7, 10: 0.2, 8: 0.1}
BAD = {1: 0.7, 0: 0.2, 2: 0.1}


def calculator_judge(messages: list[dict[str, Any]]) -> tuple[dict[int, float], str]:
    text = messages[-1]["content"]
    for message in reversed(messages):  # a parse retry appends turns; the request is the first user message
        if message["role"] == "user" and "STEP TO GRADE" in message["content"]:
            text = message["content"]
    task = re.search(r"Compute (.+?)(?: using the calculator tools|\.\n|\.$)", text, re.MULTILINE)
    step = text.split("STEP TO GRADE", 1)[-1].split("] ", 1)[-1].strip()
    if task is None:
        return BAD, "I cannot find the task."
    operations, value = _operations(ast.parse(task.group(1).rstrip("."), mode="eval").body)
    call = re.search(r"<tool_call>\s*(\{.*\})\s*</tool_call>", step, re.DOTALL)
    if call is None:
        good = _number(step) == value
        return (GOOD, "The final answer is right.") if good else (BAD, f"The answer should be {value:g}.")
    try:
        data = json.loads(call.group(1))
        name, args = data["name"], data["arguments"]
        given = (float(args["a"]), float(args["b"]))
    except (ValueError, KeyError, TypeError):
        return BAD, "The tool call is malformed."
    for op, a, b in operations:
        if name == op and (given == (a, b) or (op in _COMMUTATIVE and given == (b, a))):
            return GOOD, "This computes a needed operation."
    return BAD, "This operation is not part of the expression."


def _operations(node: ast.expr) -> tuple[list[tuple[str, float, float]], float]:
    """Every (operation, left value, right value) in the expression tree, and the tree's value."""
    if isinstance(node, ast.Constant):
        return [], float(node.value)
    assert isinstance(node, ast.BinOp), ast.dump(node)
    left_ops, left = _operations(node.left)
    right_ops, right = _operations(node.right)
    op = _OPS[type(node.op)]
    value = {"add": left + right, "subtract": left - right, "multiply": left * right, "divide": left / right if right else float("nan")}[op]
    return [*left_ops, *right_ops, (op, left, right)], value


def _number(text: str) -> float | None:
    numbers = re.findall(r"-?\d+(?:\.\d+)?", text)
    return float(numbers[-1]) if numbers else None
