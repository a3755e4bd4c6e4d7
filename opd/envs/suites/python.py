"""``python``: the model writes and runs Python to answer a question it cannot answer by reading.

Questions need computation (sums of primes, digits of factorials, Fibonacci
numbers modulo m) or a data file only the sandbox holds (medium and hard
tasks write ``numbers.txt`` into the work directory at reset). The one tool,
``run_python``, runs model-written code, so the suite requires an isolating
sandbox (``opd.envs.docker``). The verifier compares the final answer with
the value computed on the host when the task was drawn.
"""

from __future__ import annotations

import math
import re
import zlib
from collections.abc import Sequence
from typing import Literal

import numpy as np

from opd.envs.registry import register_suite
from opd.envs.sandbox import ExecResult, Sandbox
from opd.envs.suite import Task, ToolSuite, Turn, Verdict
from opd.envs.tool_calls import FinalAnswer, ToolCalls, single_call
from opd.envs.tools import ToolContext, tool
from opd.errors import ConfigError

Difficulty = Literal["easy", "medium", "hard"]
DATA_FILE = "numbers.txt"


@tool(needs="isolation")
def run_python(code: str, ctx: ToolContext) -> ExecResult:
    """Run a Python 3 program in a sandbox and return what it printed (stdout and stderr together).

    Each call starts a fresh interpreter in the working directory; files written there persist until the
    episode ends. There is no network access. Print the values you need.

    Args:
        code: The complete program to run.
    """
    return ctx.sandbox.exec(["python3", "-c", code], ctx.limits)


def _primes_below(n: int) -> list[int]:
    sieve = bytearray([1]) * n
    sieve[:2] = b"\x00\x00"
    for p in range(2, math.isqrt(n) + 1):
        if sieve[p]:
            sieve[p * p :: p] = bytearray(len(range(p * p, n, p)))
    return [i for i in range(n) if sieve[i]]


def _fib_mod(n: int, m: int) -> int:
    a, b = 0, 1
    for _ in range(n):
        a, b = b, (a + b) % m
    return a


# Each question: (prompt template, program the expert writes, host-side answer). The program prints the answer.
def _question(kind: str, rng: np.random.Generator) -> tuple[str, str, int]:
    if kind == "primes":
        n = int(rng.integers(1_000, 50_000))
        code = (
            f"n = {n}\nsieve = [True] * n\nsieve[0:2] = [False, False]\n"
            "for p in range(2, int(n ** 0.5) + 1):\n"
            "    if sieve[p]:\n        sieve[p * p :: p] = [False] * len(range(p * p, n, p))\n"
            "print(sum(i for i in range(n) if sieve[i]))"
        )
        return f"What is the sum of all prime numbers below {n}?", code, sum(_primes_below(n))
    if kind == "factorial_digits":
        k = int(rng.integers(50, 800))
        code = f"import math\nprint(len(str(math.factorial({k}))))"
        return f"How many decimal digits does {k}! ({k} factorial) have?", code, len(str(math.factorial(k)))
    if kind == "fibonacci":
        n, m = int(rng.integers(1_000, 100_000)), int(rng.integers(1_000, 1_000_000))
        code = f"a, b = 0, 1\nfor _ in range({n}):\n    a, b = b, (a + b) % {m}\nprint(a)"
        return f"What is the {n}-th Fibonacci number modulo {m} (with F(0) = 0, F(1) = 1)?", code, _fib_mod(n, m)
    k = int(rng.integers(100, 2_000))
    code = f"print(sum(map(int, str(2 ** {k}))))"
    return f"What is the sum of the decimal digits of 2 to the power {k}?", code, sum(map(int, str(2**k)))


def _data_question(rng: np.random.Generator, hard: bool) -> tuple[str, str, int, str]:
    numbers = [int(x) for x in rng.integers(-1_000, 10_000, size=int(rng.integers(200, 400)))]
    text = "\n".join(str(x) for x in numbers) + "\n"
    if not hard:
        prompt = f"The file {DATA_FILE} in your working directory holds one integer per line. What is their sum?"
        return prompt, f"print(sum(int(line) for line in open({DATA_FILE!r})))", sum(numbers), text
    modulus = int(rng.integers(3, 12))
    prompt = (
        f"The file {DATA_FILE} in your working directory holds one integer per line. Take the largest of them, "
        f"L, and answer with the number of primes below L that leave remainder 1 when divided by {modulus}."
    )
    code = (
        f"L = max(int(line) for line in open({DATA_FILE!r}))\n"
        f"print(sum(1 for n in range(2, L) if n % {modulus} == 1 and all(n % d for d in range(2, int(n ** 0.5) + 1))))"
    )
    answer = sum(1 for p in _primes_below(max(numbers)) if p % modulus == 1)
    return prompt, code, answer, text


class PythonTasks:
    def __init__(self, difficulty: Difficulty) -> None:
        self.difficulty = difficulty

    def sample(self, rng: np.random.Generator) -> Task:
        kinds = ["primes", "factorial_digits", "fibonacci", "digit_sum"]
        use_file = self.difficulty == "hard" or (self.difficulty == "medium" and rng.random() < 0.5)
        if use_file:
            prompt, code, answer, text = _data_question(rng, hard=self.difficulty == "hard")
            files = {DATA_FILE: text}
        else:
            prompt, code, answer = _question(kinds[int(rng.integers(len(kinds)))], rng)
            files = {}
        task_id = f"py-{self.difficulty}-{zlib.crc32(f'{prompt}|{answer}'.encode()):08x}"
        prompt += " Use the run_python tool to compute it, then reply with the number only."
        return Task(id=task_id, prompt=prompt, answer=answer, data={"files": files, "program": code})


def setup(task: Task, sandbox: Sandbox) -> None:
    """Write the task's data files into the freshly reset sandbox."""
    for path, text in task.data["files"].items():
        sandbox.write_file(path, text)


def verify(task: Task, answer: str, ctx: ToolContext) -> Verdict:
    given = answer.strip().rstrip(".").replace(",", "")
    if given == str(task.answer):
        return Verdict(1.0, True, "Correct.")
    return Verdict(0.0, False, f"Expected {task.answer}, got {given[:40]!r}.")


_NUMBER = re.compile(r"-?\d+")


class PythonExpert:
    """Peeks at the data file first when there is one (as a careful model would), runs the program, reads its output."""

    def act(self, task: Task, history: Sequence[Turn], rng: np.random.Generator) -> ToolCalls | FinalAnswer:
        runs = [turn for turn in history if isinstance(turn.action, ToolCalls)]
        if not runs and task.data["files"] and rng.random() < 0.5:
            return single_call("run_python", code=f"print(open({DATA_FILE!r}).read()[:200])")
        if not runs or runs[-1].action.calls[0].arguments.get("code") != task.data["program"]:
            return single_call("run_python", code=task.data["program"])
        match = _NUMBER.search(runs[-1].observation)
        return FinalAnswer(match.group() if match else "unknown")


@register_suite("python")
def python_suite(difficulty: Difficulty = "medium") -> ToolSuite:
    """Answer a question by writing and running Python in a Docker sandbox; medium and hard read a data file."""
    if difficulty not in ("easy", "medium", "hard"):
        raise ConfigError(f"difficulty must be one of ['easy', 'medium', 'hard'], got {difficulty!r}.")
    return ToolSuite(
        name="python",
        tools=(run_python,),
        tasks=PythonTasks(difficulty),
        verify=verify,
        setup=setup,
        expert=PythonExpert(),
        max_turns=6,
        requires_isolation=True,
        sandbox_kind="python",
        system_prompt=(
            "You are a careful programmer. Answer the question by writing Python programs and running them "
            "with the run_python tool, one call per turn; then reply with the number only."
        ),
        description=python_suite.__doc__ or "",
    )
