"""The trajectory store: episode records, their schema, reading for training, JSONL exchange.

A leaf of the architecture (no torch, no docker, no envs): it stores what the
agents produce and hands it to the distiller. The store location defaults to
``runs/opd.db`` in the working directory, or ``$OPD_STORE`` when set (a path or
a SQLAlchemy URL such as ``postgresql+psycopg://user@host/db``).

The names below are imported when first used (PEP 562): the store brings
SQLAlchemy, Alembic and the schema (about 0.7 s), which ``opd --help`` and the
help of every command need only for the two constants defined here.
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opd.trajectories.jsonl import episode_from_json, episode_to_json, read_jsonl, write_jsonl
    from opd.trajectories.records import (
        Annotations,
        Episode,
        EpisodeScore,
        Run,
        Step,
        StepCritique,
        StepRoute,
        TokenLogprobs,
        critique_ledger,
        new_id,
        route_shares,
        sum_usage,
    )
    from opd.trajectories.runs import EVALUATION_KIND, evaluations_by_run, find_run
    from opd.trajectories.store import EpisodeFilter, EpisodeSummary, TrajectoryStore

DEFAULT_STORE = "runs/opd.db"
# What ``EpisodeFilter.has_annotation`` takes: one name per annotation table of the store (store.py checks they agree).
ANNOTATION_KINDS = ("token_logprobs", "critiques", "episode_scores", "step_routes")


def default_store_location() -> str:
    """``$OPD_STORE`` if set, else ``runs/opd.db`` relative to the working directory."""
    return os.environ.get("OPD_STORE") or DEFAULT_STORE


_HOMES = {  # module of this package -> the names it defines
    "jsonl": ("episode_from_json", "episode_to_json", "read_jsonl", "write_jsonl"),
    "records": (
        "Annotations", "Episode", "EpisodeScore", "Run", "Step", "StepCritique", "StepRoute", "TokenLogprobs",
        "critique_ledger", "new_id", "route_shares", "sum_usage",
    ),
    "runs": ("EVALUATION_KIND", "evaluations_by_run", "find_run"),
    "store": ("EpisodeFilter", "EpisodeSummary", "TrajectoryStore"),
}  # fmt: skip
_LAZY = {name: module for module, names in _HOMES.items() for name in names}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    globals()[name] = value  # later look-ups are ordinary ones
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__all__ = [
    "ANNOTATION_KINDS",
    "DEFAULT_STORE",
    "EVALUATION_KIND",
    "Annotations",
    "Episode",
    "EpisodeFilter",
    "EpisodeScore",
    "EpisodeSummary",
    "Run",
    "Step",
    "StepCritique",
    "StepRoute",
    "TokenLogprobs",
    "TrajectoryStore",
    "critique_ledger",
    "default_store_location",
    "episode_from_json",
    "episode_to_json",
    "evaluations_by_run",
    "find_run",
    "new_id",
    "route_shares",
    "sum_usage",
    "read_jsonl",
    "write_jsonl",
]
