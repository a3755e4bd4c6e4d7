"""An episode's branches in the viewer: the tree it belongs to, and its branches compared step by step.

A branch (``opd branch``) names its parent and the step it branched at. The
tree is the family of the episode's root (followed up through the parents),
drawn with every branch under the episode it branched from; the comparison
lines up the parent and its direct branches step by step, the steps before a
branch point shown once, as the branches share them.
"""

from __future__ import annotations

import dataclasses

from fastapi import APIRouter, Request, Response

from opd.trajectories.records import Episode, Step
from opd.trajectories.store import EpisodeFilter, EpisodeSummary, TrajectoryStore
from opd.trajectories.viewer.templating import render

__all__ = ["BranchNode", "branch_tree", "router"]

router = APIRouter()

MAX_DEPTH = 8  # generations followed up and down: a bound, since ids are not checked for cycles
MAX_CHILDREN = 200  # branches listed per episode


@dataclasses.dataclass(frozen=True)
class BranchNode:
    episode: EpisodeSummary
    children: tuple[BranchNode, ...]


def branch_tree(store: TrajectoryStore, episode: Episode) -> BranchNode | None:
    """The family tree ``episode`` belongs to, from its root; None when it is no branch and has none."""
    root_id = episode.id
    parent = episode.parent_id
    for _ in range(MAX_DEPTH):
        if parent is None or not store.has_episode(parent):
            break
        root_id, parent = parent, store.get_episode(parent).parent_id
    root = store.list_episodes(EpisodeFilter(episode_id=root_id), limit=1)[0]
    tree = _node(store, root, MAX_DEPTH)
    return tree if tree.children or root_id != episode.id else None


def _node(store: TrajectoryStore, summary: EpisodeSummary, depth: int) -> BranchNode:
    children = store.list_episodes(EpisodeFilter(parent_id=summary.id), limit=MAX_CHILDREN)[::-1] if depth else []
    return BranchNode(summary, tuple(_node(store, c, depth - 1) for c in children))


@dataclasses.dataclass(frozen=True)
class Column:
    """One episode in the comparison: a header and one cell per step row (None: no such step)."""

    episode: Episode
    label: str
    cells: tuple[Step | None, ...]


@router.get("/episodes/{episode_id}/branches")
def branches_page(request: Request, episode_id: str) -> Response:
    store: TrajectoryStore = request.app.state.stores.get()
    try:
        parent = store.get_episode(episode_id)
    except KeyError as exc:
        return render(request, "problem.html", {"title": "No such episode", "message": exc.args[0], "location": None}, 404)
    summaries = store.list_episodes(EpisodeFilter(parent_id=parent.id), limit=MAX_CHILDREN)[::-1]
    branches = [store.get_episode(s.id) for s in summaries]
    rows = max([len(parent.steps), *(len(b.steps) for b in branches)])
    columns = [Column(parent, "parent", _cells(parent, rows))]
    columns += [Column(b, f"branch {i + 1} (from step {b.branch_step})", _cells(b, rows)) for i, b in enumerate(branches)]
    shared = min((b.branch_step or 0 for b in branches), default=0)  # steps every branch took from the parent
    context = {"parent": parent, "columns": columns, "rows": range(rows), "shared": shared}
    return render(request, "branches.html", context)


def _cells(episode: Episode, rows: int) -> tuple[Step | None, ...]:
    return tuple(episode.steps[i] if i < len(episode.steps) else None for i in range(rows))
