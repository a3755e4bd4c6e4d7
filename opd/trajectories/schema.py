"""The store's tables (sqlmodel). Private to ``opd.trajectories``: rows never leave the store.

Every change to these tables needs a migration in ``migrations/versions``;
``tests/trajectories/test_migrations.py`` fails when the two disagree.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, DateTime, ForeignKey, Index, LargeBinary, String, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

__all__ = ["CritiqueRow", "EpisodeRow", "EpisodeScoreRow", "RunRow", "StepRouteRow", "StepRow", "TokenLogprobsRow", "metadata"]

metadata = SQLModel.metadata

_ID = 32  # uuid4 hex


def _json(nullable: bool = False) -> Any:
    return Field(sa_column=Column(JSON, nullable=nullable))


def _when() -> Any:
    return Field(sa_column=Column(DateTime(timezone=True), nullable=False))


def _episode_fk() -> Any:
    return Field(sa_column=Column(String(_ID), ForeignKey("episodes.id", ondelete="CASCADE"), nullable=False, index=True))


class RunRow(SQLModel, table=True):
    __tablename__ = "runs"

    id: str = Field(sa_column=Column(String(_ID), primary_key=True))
    name: str = ""
    config: dict[str, Any] = _json()
    code_version: str = ""
    created_at: datetime = _when()


class EpisodeRow(SQLModel, table=True):
    __tablename__ = "episodes"
    __table_args__ = (Index("ix_episodes_suite_success", "suite", "success"),)

    pk: int | None = Field(default=None, primary_key=True)  # insertion order, for keyset pagination
    id: str = Field(sa_column=Column(String(_ID), unique=True, nullable=False))
    run_id: str = Field(sa_column=Column(String(_ID), ForeignKey("runs.id"), nullable=False, index=True))
    suite: str
    task_id: str
    seed: int | None = None
    reward: float
    success: bool
    termination: str
    failure_reason: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    num_steps: int  # written with the steps in one transaction; a mismatch would mean a partial episode
    num_tokens: int
    env_options: dict[str, Any] = _json()
    initial_messages: list[dict[str, Any]] = _json()
    policy_model: str = ""
    teacher_models: list[str] = _json()
    tokenizer: str = ""
    chat_template_hash: str = ""
    sandbox: dict[str, Any] = _json()
    writer: dict[str, Any] = _json()  # added by revision 0002
    created_at: datetime = _when()
    # A branch: the episode it was branched from (not a foreign key: a branch may be imported without its parent)
    # and the step it branched at. Added by revision 0004.
    parent_id: str | None = Field(default=None, sa_column=Column(String(_ID), nullable=True, index=True))
    branch_step: int | None = None


class StepRow(SQLModel, table=True):
    __tablename__ = "steps"
    __table_args__ = (UniqueConstraint("episode_id", "index"),)

    pk: int | None = Field(default=None, primary_key=True)
    episode_id: str = _episode_fk()
    index: int
    action: str = Field(sa_column=Column(Text, nullable=False))
    observation: str = Field(sa_column=Column(Text, nullable=False))
    num_tokens: int
    token_ids: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    policy_mask: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    logprobs: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    messages: list[dict[str, Any]] = _json()
    tool_calls: list[dict[str, Any]] = _json()
    tool_results: list[dict[str, Any]] = _json()
    error_kind: str | None = None
    reward: float
    terminated: bool
    truncated: bool
    timings: dict[str, float] = _json()


class TokenLogprobsRow(SQLModel, table=True):
    __tablename__ = "token_logprobs"
    __table_args__ = (UniqueConstraint("episode_id", "step_index", "teacher"),)

    pk: int | None = Field(default=None, primary_key=True)
    episode_id: str = _episode_fk()
    step_index: int
    teacher: str
    num_tokens: int
    k: int
    token_ids: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    logprobs: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    tail_mass: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class CritiqueRow(SQLModel, table=True):
    __tablename__ = "critiques"
    __table_args__ = (UniqueConstraint("episode_id", "step_index", "teacher"),)

    pk: int | None = Field(default=None, primary_key=True)
    episode_id: str = _episode_fk()
    step_index: int
    teacher: str
    score: float | None = None
    critique: str = Field(sa_column=Column(Text, nullable=False))
    corrected_action: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    uncertainty: float | None = None
    error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    usage: dict[str, Any] = _json()  # uncertainty, error and usage added by revision 0003


class EpisodeScoreRow(SQLModel, table=True):
    __tablename__ = "episode_scores"
    __table_args__ = (UniqueConstraint("episode_id", "teacher"),)

    pk: int | None = Field(default=None, primary_key=True)
    episode_id: str = _episode_fk()
    teacher: str
    reward: float
    detail: str = Field(sa_column=Column(Text, nullable=False))


class StepRouteRow(SQLModel, table=True):
    """Which teacher a router chose for a step (added by revision 0004)."""

    __tablename__ = "step_routes"
    __table_args__ = (UniqueConstraint("episode_id", "step_index", "teacher"),)

    pk: int | None = Field(default=None, primary_key=True)
    episode_id: str = _episode_fk()
    step_index: int
    teacher: str  # the router
    chosen: str
    reason: str = Field(sa_column=Column(Text, nullable=False))
    uncertainty: float | None = None
    tokens: int
    cost: float
