"""Success curves and per-task differences between two runs."""

from __future__ import annotations

from opd.trajectories.store import Outcome
from opd.trajectories.viewer.compare import compare_tasks, plot_curves, success_curve


def outcomes(successes: list[bool], prefix: str = "t") -> list[Outcome]:
    return [Outcome(f"{prefix}{i}", i, s, float(s)) for i, s in enumerate(successes)]


def test_success_curve_windows() -> None:
    assert success_curve([]) == []
    assert success_curve(outcomes([True, False, True])) == [(1, 1.0), (2, 0.0), (3, 1.0)]
    curve = success_curve(outcomes([i >= 50 for i in range(100)]), windows=4)
    assert curve == [(25, 0.0), (50, 0.0), (75, 1.0), (100, 1.0)]


def test_plot_maps_rates_into_the_frame() -> None:
    plot = plot_curves([("A", [(50, 0.0), (100, 1.0)]), ("B", [])])
    first, last = plot.lines[0].points.split()
    assert first == f"{plot.left + (plot.right - plot.left) / 2:.1f},{plot.bottom:.1f}" and last == f"{plot.right:.1f},{plot.top:.1f}"
    assert plot.lines[1].points == "" and plot.y_ticks[-1][1] == "100%" and plot.x_ticks[-1][1] == "100"


def test_task_differences() -> None:
    a = outcomes([True, False, False]) + [Outcome("t1", 1, True, 1.0), Outcome("only-a", None, True, 1.0)]
    b = outcomes([True, True, False]) + [Outcome("only-b", 5, False, 0.0)]
    comparison = compare_tasks(a, b)
    assert (comparison.shared, comparison.better_in_a, comparison.better_in_b) == (3, 0, 1)
    assert (comparison.only_in_a, comparison.only_in_b) == (1, 1)
    [changed] = comparison.differences
    assert (changed.task_id, changed.a, changed.b, changed.difference) == ("t1", (1, 2), (1, 1), 0.5)
