"""The first schema: runs, episodes, steps and teacher annotations.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _episode_fk() -> sa.Column:
    return sa.Column("episode_id", sa.String(32), sa.ForeignKey("episodes.id", ondelete="CASCADE"), nullable=False)


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("code_version", sa.String(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "episodes",
        sa.Column("pk", sa.Integer(), primary_key=True),
        sa.Column("id", sa.String(32), nullable=False, unique=True),
        sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.id"), nullable=False),
        sa.Column("suite", sa.String(), nullable=False),
        sa.Column("task_id", sa.String(), nullable=False),
        sa.Column("seed", sa.Integer(), nullable=True),
        sa.Column("reward", sa.Float(), nullable=False),
        sa.Column("success", sa.Boolean(), nullable=False),
        sa.Column("termination", sa.String(), nullable=False),
        sa.Column("failure_reason", sa.Text(), nullable=True),
        sa.Column("num_steps", sa.Integer(), nullable=False),
        sa.Column("num_tokens", sa.Integer(), nullable=False),
        sa.Column("env_options", sa.JSON(), nullable=False),
        sa.Column("initial_messages", sa.JSON(), nullable=False),
        sa.Column("policy_model", sa.String(), nullable=False),
        sa.Column("teacher_models", sa.JSON(), nullable=False),
        sa.Column("tokenizer", sa.String(), nullable=False),
        sa.Column("chat_template_hash", sa.String(), nullable=False),
        sa.Column("sandbox", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_episodes_run_id", "episodes", ["run_id"])
    op.create_table(
        "steps",
        sa.Column("pk", sa.Integer(), primary_key=True),
        _episode_fk(),
        sa.Column("index", sa.Integer(), nullable=False),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("observation", sa.Text(), nullable=False),
        sa.Column("num_tokens", sa.Integer(), nullable=False),
        sa.Column("token_ids", sa.LargeBinary(), nullable=False),
        sa.Column("policy_mask", sa.LargeBinary(), nullable=False),
        sa.Column("logprobs", sa.LargeBinary(), nullable=False),
        sa.Column("messages", sa.JSON(), nullable=False),
        sa.Column("tool_calls", sa.JSON(), nullable=False),
        sa.Column("tool_results", sa.JSON(), nullable=False),
        sa.Column("error_kind", sa.String(), nullable=True),
        sa.Column("reward", sa.Float(), nullable=False),
        sa.Column("terminated", sa.Boolean(), nullable=False),
        sa.Column("truncated", sa.Boolean(), nullable=False),
        sa.Column("timings", sa.JSON(), nullable=False),
        sa.UniqueConstraint("episode_id", "index"),
    )
    op.create_index("ix_steps_episode_id", "steps", ["episode_id"])
    op.create_table(
        "token_logprobs",
        sa.Column("pk", sa.Integer(), primary_key=True),
        _episode_fk(),
        sa.Column("step_index", sa.Integer(), nullable=False),
        sa.Column("teacher", sa.String(), nullable=False),
        sa.Column("num_tokens", sa.Integer(), nullable=False),
        sa.Column("k", sa.Integer(), nullable=False),
        sa.Column("token_ids", sa.LargeBinary(), nullable=False),
        sa.Column("logprobs", sa.LargeBinary(), nullable=False),
        sa.Column("tail_mass", sa.LargeBinary(), nullable=False),
        sa.UniqueConstraint("episode_id", "step_index", "teacher"),
    )
    op.create_index("ix_token_logprobs_episode_id", "token_logprobs", ["episode_id"])
    op.create_table(
        "critiques",
        sa.Column("pk", sa.Integer(), primary_key=True),
        _episode_fk(),
        sa.Column("step_index", sa.Integer(), nullable=False),
        sa.Column("teacher", sa.String(), nullable=False),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("critique", sa.Text(), nullable=False),
        sa.Column("corrected_action", sa.Text(), nullable=True),
        sa.UniqueConstraint("episode_id", "step_index", "teacher"),
    )
    op.create_index("ix_critiques_episode_id", "critiques", ["episode_id"])
    op.create_table(
        "episode_scores",
        sa.Column("pk", sa.Integer(), primary_key=True),
        _episode_fk(),
        sa.Column("teacher", sa.String(), nullable=False),
        sa.Column("reward", sa.Float(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.UniqueConstraint("episode_id", "teacher"),
    )
    op.create_index("ix_episode_scores_episode_id", "episode_scores", ["episode_id"])


def downgrade() -> None:
    for table in ("episode_scores", "critiques", "token_logprobs", "steps", "episodes", "runs"):
        op.drop_table(table)
