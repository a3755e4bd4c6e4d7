"""``opd runs list``: the runs of a store, with what each is called and how it did.

A run's name or any unique prefix of its id (the first column) is what
``--run`` takes in the other commands. "rollout success" is the success of the
episodes the run played (for SFT, the teacher played them); "held-out eval" is
the greedy success on held-out tasks of its newest stored evaluation.
"""

from __future__ import annotations

from collections import defaultdict

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from opd.cli.episodes import StoreOption, open_store
from opd.cli.render import console

app = typer.Typer(help="List the runs of a trajectory store.", no_args_is_help=True)


@app.command("list")
def list_runs(store: str = StoreOption) -> None:
    """List runs, oldest first: id prefix, name, kind, episodes, rollout success and held-out evaluation."""
    from opd.trajectories import EVALUATION_KIND, evaluations_by_run

    with open_store(store) as trajectories:
        runs = trajectories.runs()
        episodes: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for stats in trajectories.episode_stats():
            episodes[stats.run_id][0] += stats.episodes
            episodes[stats.run_id][1] += stats.successes
    evaluations = evaluations_by_run(runs)
    table = Table(title=f"{len(runs)} runs (oldest first)", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    for column in ("id", "name", "kind", "created", "episodes", "rollout success", "held-out eval"):
        # In 80 columns (a log file) only names and figures wrap, by word: an id, kind or heading cut to "train…" says nothing.
        whole = column in ("id", "kind", "created", "episodes")
        widest_word = max(len(word) for word in column.split())
        table.add_column(column, no_wrap=whole, min_width=widest_word, justify="right" if column == "episodes" else "left")
    for run in runs:
        count, successes = episodes[run.id]
        kind = run.config.get("kind") or ("training" if "student" in run.config else "episodes")
        evaluation = run if kind == EVALUATION_KIND else evaluations.get(run.id)
        table.add_row(
            run.id[:12],
            escape(run.name or "(unnamed)"),
            str(kind),
            run.created_at.strftime("%Y-%m-%d %H:%M"),
            f"{count:,}",
            f"{successes / count:.0%}" if count else "-",
            _describe_evaluation(evaluation.config) if evaluation is not None else "-",
        )
    console.print(table)


def _describe_evaluation(config: dict) -> str:
    return f"{config['success_rate']:.1%} [{config['ci_low']:.1%}, {config['ci_high']:.1%}] of {config['episodes']}"
