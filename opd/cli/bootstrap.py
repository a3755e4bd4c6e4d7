"""``opd bootstrap SUITE``: the demo's small-model recipe for any registered suite with a scripted expert.

A word-level tokenizer fitted to the suite's texts, a teacher taught by SFT on
the expert's demonstrations, and a smaller student warmed up by SFT on teacher
episodes: the two models ``opd train`` needs, cached per recipe like the demo's
(``opd.distill.demo.demo_models``). ``opd demo`` is this on ``calculator`` plus
the OPD-vs-SFT comparison.
"""

from __future__ import annotations

import time

import typer

from opd.cli.options import SUITE_OPTION, parse_options
from opd.cli.render import console, fail
from opd.errors import OpdError


def bootstrap(
    suite: str = typer.Argument(..., help="A registered suite with a scripted expert (`opd suites list`)."),
    option: list[str] = SUITE_OPTION,
    workdir: str = typer.Option("runs/bootstrap", help="Where the models go (cached per recipe under WORKDIR/models)."),
    demonstrations: int = typer.Option(2000, min=1, help="Scripted-expert episodes the teacher learns from."),
    teacher_steps: int = typer.Option(800, min=1, help="SFT steps of the teacher, at most."),
    teacher_target: float = typer.Option(0.95, min=0.0, max=1.0, help="Stop the teacher's SFT at this held-out success."),
    warmup_steps: int = typer.Option(1000, min=0, help="SFT steps of the student on teacher episodes, at most."),
    warmup_target: float = typer.Option(0.5, min=0.0, max=1.0, help="Stop the student's warm-up at this success."),
    numbers: str = typer.Option(None, help="Integers that are one token each, LOW:HIGH (default 0:max_value or 0:99)."),
    seed: int = typer.Option(0, help="Seeds the models and their training."),
) -> None:
    """Build a tiny teacher and student for SUITE from its scripted expert (the demo's recipe), ready for `opd train`."""
    from opd.distill.demo import DemoConfig, demo_models

    options = parse_options(option)
    span = _numbers(numbers)
    config = DemoConfig(
        workdir=workdir, suite=suite, suite_options=options, numbers=span, demonstrations=demonstrations, seed=seed,
        teacher_steps=teacher_steps, teacher_target=teacher_target, warmup_steps=warmup_steps, warmup_target=warmup_target,
    )  # fmt: skip
    started = time.perf_counter()

    def report(message: str) -> None:
        console.print(f"[dim]{time.perf_counter() - started:6.1f}s[/] {message}")

    try:
        teacher, student = demo_models(config, report=report)
    except OpdError as exc:
        fail(str(exc))
    console.print(f"teacher: {teacher}\nstudent: {student}")
    hint = f"suite: {suite}\nteacher: {teacher}\nstudent: {student}" + (f"\nsuite_options: {options}" if options else "")
    console.print(f"[dim]in a training config:[/]\n{hint}")


def _numbers(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    low, sep, high = text.partition(":")
    try:
        span = (int(low), int(high))
    except ValueError:
        fail(f"--numbers is LOW:HIGH, e.g. 0:99; got {text!r}.")
    if not sep or span[0] > span[1]:
        fail(f"--numbers is LOW:HIGH with LOW <= HIGH, got {text!r}.")
    return span
