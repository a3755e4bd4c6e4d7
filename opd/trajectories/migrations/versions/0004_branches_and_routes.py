"""Branches and routes: episodes branched from a stored step record their parent and step; routers record each step's teacher.

Revision ID: 0004
Revises: 0003

Episodes written before this revision are no branch (both columns NULL) and have no routes.
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("episodes") as batch:
        batch.add_column(sa.Column("parent_id", sa.String(32), nullable=True))
        batch.add_column(sa.Column("branch_step", sa.Integer(), nullable=True))
    op.create_index("ix_episodes_parent_id", "episodes", ["parent_id"])
    op.create_table(
        "step_routes",
        sa.Column("pk", sa.Integer(), primary_key=True),
        sa.Column("episode_id", sa.String(32), sa.ForeignKey("episodes.id", ondelete="CASCADE"), nullable=False),
        sa.Column("step_index", sa.Integer(), nullable=False),
        sa.Column("teacher", sa.String(), nullable=False),
        sa.Column("chosen", sa.String(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("uncertainty", sa.Float(), nullable=True),
        sa.Column("tokens", sa.Integer(), nullable=False),
        sa.Column("cost", sa.Float(), nullable=False),
        sa.UniqueConstraint("episode_id", "step_index", "teacher"),
    )
    op.create_index("ix_step_routes_episode_id", "step_routes", ["episode_id"])


def downgrade() -> None:
    op.drop_index("ix_step_routes_episode_id", table_name="step_routes")
    op.drop_table("step_routes")
    op.drop_index("ix_episodes_parent_id", table_name="episodes")
    with op.batch_alter_table("episodes") as batch:
        batch.drop_column("branch_step")
        batch.drop_column("parent_id")
