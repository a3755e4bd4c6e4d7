"""``opd annotate``: score stored episodes with another teacher, resumably, showing progress and cost."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from opd.cli.episodes import StoreOption, open_store, run_ids
from opd.cli.render import console, describe_usage, fail
from opd.errors import OpdError

TEACHER_HELP = (
    "The teacher: a local model directory or hub name (white-box, top-k log-probs), critic:MODEL for a litellm model "
    "that grades steps (black-box), or self:answer / self:demonstration for the student with privileged context (needs --student)."
)


def annotate_command(
    teacher: str = typer.Option(..., "--teacher", "-t", help=TEACHER_HELP),
    store: str = StoreOption,
    run: list[str] = typer.Option([], "--run", help="Only episodes of this run: its name, id or a unique id prefix (repeatable)."),
    suite: list[str] = typer.Option([], "--suite", help="Only episodes of this suite (repeatable)."),
    success: bool = typer.Option(None, "--success/--failure", help="Only successful (or unsuccessful) episodes."),
    since: datetime = typer.Option(None, help="Only episodes written at or after this time, in UTC: 2026-11-01 or 2026-11-01T12:00:00."),
    until: datetime = typer.Option(None, help="Only episodes written before this time."),
    limit: int = typer.Option(None, min=1, help="Score at most this many episodes now (a budget); run again for more."),
    batch_size: int = typer.Option(8, min=1, help="Episodes per teacher call and per stored transaction."),
    k: int = typer.Option(64, min=1, help="White-box and self teachers: top-k log-probs kept per token."),
    device: str = typer.Option("cpu", help="White-box and self teachers: where the model runs."),
    student: str = typer.Option(None, help="Self teacher: the student model directory whose weights score."),
    api_base: str = typer.Option(None, help="Critic: the API base URL, e.g. http://127.0.0.1:8000/v1."),
    api_key_env: str = typer.Option(None, help="Critic: the environment variable that holds the API key."),
    cache: str = typer.Option(None, help="Critic: a SQLite file of cached responses, so a re-run pays nothing."),
) -> None:
    """Add a teacher's annotations to stored episodes, beside the existing ones; resumes where it stopped."""
    from opd.agents.annotate import annotate_store
    from opd.trajectories import EpisodeFilter

    with open_store(store) as trajectories:
        runs = run_ids(trajectories, run)
        where = EpisodeFilter(run_ids=runs, suites=tuple(suite), success=success, created_after=since, created_before=until)
        try:
            scorer = load_teacher(teacher, k=k, device=device, student=student, api_base=api_base, api_key_env=api_key_env, cache=cache)
        except (OpdError, OSError) as exc:
            fail(f"Cannot load teacher {teacher!r}: {exc}")
        report = _Report(scorer.name)
        try:
            result = annotate_store(trajectories, scorer, where, batch_size=batch_size, limit=limit, progress=report.update)
        except KeyboardInterrupt:
            report.close()
            console.print(f"[yellow]interrupted[/]: {report.last_line()}. Every batch shown is stored; run the same command to go on.")
            raise typer.Exit(130) from None
        except OpdError as exc:
            report.close()
            fail(str(exc))
        finally:
            if hasattr(scorer, "close"):
                scorer.close()
    report.close()
    console.print(f"done: {result.describe()}")
    if result.steps_graded:
        console.print(f"critic: {describe_usage(result.usage)}")


def load_teacher(
    spec: str, *, k: int, device: str, student: str | None, api_base: str | None, api_key_env: str | None, cache: str | None
) -> Any:
    """The teacher a ``--teacher`` value names: critic:MODEL, self:CONTEXT or a model directory / hub name."""
    kind, _, rest = spec.partition(":")
    if kind == "critic" and rest:
        from opd.agents.critic import BlackBoxTeacher, CriticConfig

        return BlackBoxTeacher(CriticConfig(model=rest, api_base=api_base, api_key_env=api_key_env, cache=cache))
    if kind == "self" and rest:
        from opd.agents.policy import CausalLMPolicy
        from opd.agents.self_teacher import SelfTeacher, SelfTeacherConfig

        if student is None:
            fail("A self teacher scores with the student's weights: give --student MODEL_DIR.")
        return SelfTeacher(CausalLMPolicy.from_pretrained(student, device=device), SelfTeacherConfig(context=rest), k=k)  # type: ignore[arg-type]
    from opd.agents.teacher import WhiteBoxTeacher

    return WhiteBoxTeacher.from_pretrained(spec, k=k, device=device)


class _Report:
    """A progress bar on a terminal; a line at most every few seconds when output goes to a file or a pipe."""

    EVERY_S = 5.0

    def __init__(self, teacher: str) -> None:
        self.teacher = teacher
        self.latest: Any = None
        self._printed_at = 0.0
        self._bar: Progress | None = None
        if console.is_terminal:
            columns = (TextColumn("[bold]annotate"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[status]}"))
            self._bar = Progress(*columns, TimeElapsedColumn(), console=console)
            self._bar.start()
            self._task = self._bar.add_task("annotate", total=None, status=teacher)

    def update(self, state: Any) -> None:
        self.latest = state
        if self._bar is not None:
            self._bar.update(self._task, completed=state.done + state.empty, total=state.total, status=self.last_line())
        elif time.monotonic() - self._printed_at >= self.EVERY_S or state.done + state.empty >= state.total:
            self._printed_at = time.monotonic()
            console.print(self.last_line(), soft_wrap=True)

    def last_line(self) -> str:
        return "nothing annotated yet" if self.latest is None else self.latest.describe()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
