"""Finding runs the way people name them: a full id, a unique id prefix (as listings show ids), or a run name.

Also the mark of a stored evaluation (``Run.config["kind"]``), which readers of
the store (the viewer, ``opd runs list``) show beside the run it evaluates.
"""

from __future__ import annotations

from collections.abc import Sequence

from opd.errors import NotInStoreError
from opd.trajectories.records import Run

__all__ = ["EVALUATION_KIND", "evaluations_by_run", "find_run"]

EVALUATION_KIND = "evaluation"  # Run.config["kind"] of an evaluation stored as a run of its own


def find_run(runs: Sequence[Run], key: str) -> Run:
    """The run ``key`` means: its id, a unique id prefix, or its name (the newest run of that name).

    ``runs`` are in creation order, as ``TrajectoryStore.runs()`` returns them.
    """
    exact = [run for run in runs if run.id == key]
    if exact:
        return exact[0]
    prefixed = [run for run in runs if run.id.startswith(key)]
    if len(prefixed) == 1:
        return prefixed[0]
    if len(prefixed) > 1:
        shown = ", ".join(f"{run.id[:12]} ({run.name})" for run in prefixed[:5])
        raise NotInStoreError(f"Run id prefix {key!r} matches {len(prefixed)} runs ({shown}); give more characters.")
    named = [run for run in runs if run.name == key]
    if named:
        return named[-1]
    names = sorted({run.name for run in runs if run.name})
    raise NotInStoreError(
        f"No run with the id, id prefix or name {key!r}. Runs: {', '.join(repr(n) for n in names) or 'none'} (see `opd runs list`)."
    )


def evaluations_by_run(runs: Sequence[Run]) -> dict[str, Run]:
    """For each evaluated run id, its newest stored evaluation."""
    found: dict[str, Run] = {}
    for run in runs:
        evaluated = run.config.get("evaluates_run") if run.config.get("kind") == EVALUATION_KIND else None
        if evaluated:
            found[evaluated] = run  # runs come oldest first: the newest wins
    return found
