"""The viewer's HTML pages: runs, the episodes table, one episode, two runs side by side.

Pages are rendered on the server from the read-only store. The episodes table
is cut by key (50 rows, "newer"/"older" by episode id), so a page costs the
same at the end of 100,000 episodes as at the start; its total is counted
separately, lazily, by the page's script.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict

from fastapi import APIRouter, Request, Response

from opd.trajectories.records import route_shares
from opd.trajectories.runs import EVALUATION_KIND, evaluations_by_run
from opd.trajectories.store import EpisodeStats, TrajectoryStore
from opd.trajectories.viewer.branches import branch_tree
from opd.trajectories.viewer.compare import compare_tasks, plot_curves, success_curve
from opd.trajectories.viewer.filters import parse_filters
from opd.trajectories.viewer.templating import render
from opd.trajectories.viewer.tokens import DIVERGENCE_BINS

router = APIRouter()

PAGE_SIZE = 50


def store_of(request: Request) -> TrajectoryStore:
    return request.app.state.stores.get()


@dataclasses.dataclass(frozen=True)
class RunTotals:
    """A run's episode stats summed over its suites."""

    episodes: int
    successes: int
    failed: int
    mean_reward: float
    tokens: int

    @classmethod
    def of(cls, stats: list[EpisodeStats]) -> RunTotals:
        episodes = sum(s.episodes for s in stats)
        mean_reward = sum(s.mean_reward * s.episodes for s in stats) / episodes if episodes else 0.0
        return cls(episodes, sum(s.successes for s in stats), sum(s.failed for s in stats), mean_reward, sum(s.tokens for s in stats))

    @property
    def success_rate(self) -> float | None:
        return self.successes / self.episodes if self.episodes else None


@router.get("/")
def runs_page(request: Request) -> Response:
    store = store_of(request)
    stats: dict[str, list[EpisodeStats]] = defaultdict(list)
    for s in store.episode_stats():
        stats[s.run_id].append(s)
    everything = store.runs()
    runs = [(run, stats[run.id], RunTotals.of(stats[run.id])) for run in reversed(everything)]
    evaluations = evaluations_by_run(everything)  # a run's held-out figure sits beside its rollout success
    evaluations.update({run.id: run for run in everything if run.config.get("kind") == EVALUATION_KIND})
    context = {"runs": runs, "evaluations": evaluations, "location": request.app.state.stores.location}
    return render(request, "runs.html", context)


@router.get("/episodes")
def episodes_page(request: Request, before: str | None = None, after: str | None = None) -> Response:
    store = store_of(request)
    query = parse_filters(request.query_params)
    rows = store.list_episodes(query.where, limit=PAGE_SIZE + 1, before=before, after=after)
    if after is not None:  # rows run newest first; the extra row is the newest, beyond this page
        has_newer, has_older = len(rows) > PAGE_SIZE, True
        rows = rows[-PAGE_SIZE:]
    else:
        has_newer, has_older = before is not None, len(rows) > PAGE_SIZE
        rows = rows[:PAGE_SIZE]
    context = {
        "query": query,
        "rows": rows,
        "runs": {run.id: run for run in store.runs()},
        "suites": store.suites(),
        "newer": query.link(after=rows[0].id) if rows and has_newer else None,
        "older": query.link(before=rows[-1].id) if rows and has_older else None,
        "first": query.link() if before or after else None,
        "count_link": query.link(),
    }
    return render(request, "episodes.html", context)


@router.get("/episodes/{episode_id}")
def episode_page(request: Request, episode_id: str, teacher: str | None = None) -> Response:
    store = store_of(request)
    try:
        episode = store.get_episode(episode_id)
    except KeyError as exc:
        return render(request, "problem.html", {"title": "No such episode", "message": exc.args[0], "location": None}, 404)
    teachers = sorted({a.teacher for a in episode.annotations.token_logprobs})
    context = {
        "episode": episode,
        "run": next((r for r in store.runs() if r.id == episode.run_id), None),
        "teachers": teachers,
        "teacher": teacher if teacher in teachers else (teachers[0] if teachers else ""),
        "critiques": len(episode.annotations.critiques),
        "bins": _legend(),
        "tree": branch_tree(store, episode),
        "routes": route_shares(episode.annotations.routes),
    }
    return render(request, "episode.html", context)


def _legend() -> list[tuple[int, str]]:
    """(bin, label) for each colour of the token divergence scale."""
    edges = DIVERGENCE_BINS
    labels = [f"< {edges[0]:g}"] + [f"{lo:g} to {hi:g}" for lo, hi in zip(edges, edges[1:], strict=False)] + [f"≥ {edges[-1]:g}"]
    return list(enumerate(labels))


@router.get("/compare")
def compare_page(request: Request, a: str = "", b: str = "") -> Response:
    store = store_of(request)
    runs = {run.id: run for run in store.runs()}
    context = {"runs": list(runs.values()), "a": a, "b": b, "plot": None, "tasks": None, "problems": []}
    chosen = [run_id for run_id in (a, b) if run_id]
    context["problems"] = [f"No run {run_id!r} in this store." for run_id in chosen if run_id not in runs]
    if len(chosen) == 2 and not context["problems"]:
        outcomes = {run_id: store.outcomes(run_id) for run_id in (a, b)}
        labels = [f"A: {runs[a].name or a[:8]}", f"B: {runs[b].name or b[:8]}"]
        context["plot"] = plot_curves([(labels[0], success_curve(outcomes[a])), (labels[1], success_curve(outcomes[b]))])
        context["tasks"] = compare_tasks(outcomes[a], outcomes[b])
        context["totals"] = [(labels[i], len(outcomes[r]), sum(o.success for o in outcomes[r])) for i, r in enumerate((a, b))]
    return render(request, "compare.html", context)
