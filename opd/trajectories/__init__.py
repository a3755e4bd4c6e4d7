"""The trajectory store: episode records, their schema, reading for training, JSONL exchange.

A leaf of the architecture (no torch, no docker, no envs): it stores what the
agents produce and hands it to the distiller. The store location defaults to
``runs/opd.db`` in the working directory, or ``$OPD_STORE`` when set (a path or
a SQLAlchemy URL such as ``postgresql+psycopg://user@host/db``).
"""

import os

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
from opd.trajectories.store import ANNOTATION_KINDS, EpisodeFilter, EpisodeSummary, TrajectoryStore

DEFAULT_STORE = "runs/opd.db"


def default_store_location() -> str:
    """``$OPD_STORE`` if set, else ``runs/opd.db`` relative to the working directory."""
    return os.environ.get("OPD_STORE") or DEFAULT_STORE


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
