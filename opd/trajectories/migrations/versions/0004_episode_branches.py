"""Episodes branched from a stored step record their parent episode and the step they branched at.

Revision ID: 0004
Revises: 0003

Episodes written before this revision are no branch (both columns NULL).
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


def downgrade() -> None:
    op.drop_index("ix_episodes_parent_id", table_name="episodes")
    with op.batch_alter_table("episodes") as batch:
        batch.drop_column("branch_step")
        batch.drop_column("parent_id")
