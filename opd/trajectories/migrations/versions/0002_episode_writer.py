"""Record which process wrote each episode, and index episodes by suite and success.

Revision ID: 0002
Revises: 0001

Episodes written before this revision get an empty writer record.
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("episodes") as batch:
        batch.add_column(sa.Column("writer", sa.JSON(), nullable=False, server_default=sa.text("'{}'")))
    op.create_index("ix_episodes_suite_success", "episodes", ["suite", "success"])


def downgrade() -> None:
    op.drop_index("ix_episodes_suite_success", table_name="episodes")
    with op.batch_alter_table("episodes") as batch:
        batch.drop_column("writer")
