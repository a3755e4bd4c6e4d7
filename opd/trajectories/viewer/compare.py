"""Two runs side by side: success curves as an SVG drawn on the server, and the tasks whose outcome differs.

A curve is the success rate over consecutive windows of a run's episodes, in
the order they were written (the store keeps no evaluation metrics). Tasks are
matched by (task id, seed): the same seed of a suite draws the same task.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Sequence

from opd.trajectories.store import Outcome

__all__ = ["Plot", "TaskComparison", "compare_tasks", "plot_curves", "success_curve"]

WINDOWS = 40  # points per curve at most


def success_curve(outcomes: Sequence[Outcome], windows: int = WINDOWS) -> list[tuple[int, float]]:
    """(episodes so far, success rate of the window that ends there), over at most ``windows`` equal windows."""
    n = len(outcomes)
    if n == 0:
        return []
    edges = sorted({round(n * i / windows) for i in range(1, windows + 1)} | {n})
    curve, start = [], 0
    for end in edges:
        if end > start:
            curve.append((end, sum(o.success for o in outcomes[start:end]) / (end - start)))
            start = end
    return curve


@dataclasses.dataclass(frozen=True)
class Line:
    label: str
    css_class: str
    points: str  # SVG polyline points "x,y x,y ..."


@dataclasses.dataclass(frozen=True)
class Plot:
    """What the template draws: the frame, the lines and the tick labels, in SVG user units."""

    width: int
    height: int
    left: int
    top: int
    right: int
    bottom: int
    lines: tuple[Line, ...]
    x_ticks: tuple[tuple[float, str], ...]
    y_ticks: tuple[tuple[float, str], ...]


def plot_curves(curves: Sequence[tuple[str, list[tuple[int, float]]]], *, width: int = 640, height: int = 260) -> Plot:
    """Success rate (0-100%) against episodes, one line per (label, curve)."""
    left, top, right, bottom = 48, 12, width - 12, height - 32
    most = max((curve[-1][0] for _, curve in curves if curve), default=1)

    def x(episodes: float) -> float:
        return left + (right - left) * episodes / most

    def y(rate: float) -> float:
        return bottom - (bottom - top) * rate

    lines = tuple(
        Line(label, f"series-{i}", " ".join(f"{x(e):.1f},{y(r):.1f}" for e, r in curve)) for i, (label, curve) in enumerate(curves)
    )
    x_ticks = tuple((x(most * i / 4), f"{round(most * i / 4):,}") for i in range(5))
    y_ticks = tuple((y(i / 4), f"{i * 25}%") for i in range(5))
    return Plot(width, height, left, top, right, bottom, lines, x_ticks, y_ticks)


@dataclasses.dataclass(frozen=True)
class TaskOutcome:
    task_id: str
    seed: int | None
    a: tuple[int, int]  # (successes, episodes) in run A
    b: tuple[int, int]

    @property
    def difference(self) -> float:
        """Success rate in B minus success rate in A."""
        return self.b[0] / self.b[1] - self.a[0] / self.a[1]


@dataclasses.dataclass(frozen=True)
class TaskComparison:
    shared: int  # tasks both runs attempted
    better_in_a: int
    better_in_b: int
    only_in_a: int
    only_in_b: int
    differences: tuple[TaskOutcome, ...]  # the shared tasks whose success rate differs, largest difference first


def compare_tasks(a: Sequence[Outcome], b: Sequence[Outcome], *, limit: int = 200) -> TaskComparison:
    tally_a, tally_b = _tally(a), _tally(b)
    shared = [TaskOutcome(key[0], key[1], tally_a[key], tally_b[key]) for key in tally_a.keys() & tally_b.keys()]
    differing = sorted((t for t in shared if t.difference != 0), key=lambda t: (-abs(t.difference), t.task_id, t.seed or 0))
    return TaskComparison(
        shared=len(shared),
        better_in_a=sum(t.difference < 0 for t in shared),
        better_in_b=sum(t.difference > 0 for t in shared),
        only_in_a=len(tally_a.keys() - tally_b.keys()),
        only_in_b=len(tally_b.keys() - tally_a.keys()),
        differences=tuple(differing[:limit]),
    )


def _tally(outcomes: Sequence[Outcome]) -> dict[tuple[str, int | None], tuple[int, int]]:
    counts: dict[tuple[str, int | None], list[int]] = defaultdict(lambda: [0, 0])
    for o in outcomes:
        counts[(o.task_id, o.seed)][0] += int(o.success)
        counts[(o.task_id, o.seed)][1] += 1
    return {key: (s, n) for key, (s, n) in counts.items()}
