"""Critiques carry the teacher's uncertainty, why a step is unannotated, and their cost.

Revision ID: 0003
Revises: 0002

Critiques written before this revision have no uncertainty, no error and an empty usage record.
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("critiques") as batch:
        batch.add_column(sa.Column("uncertainty", sa.Float(), nullable=True))
        batch.add_column(sa.Column("error", sa.Text(), nullable=True))
        batch.add_column(sa.Column("usage", sa.JSON(), nullable=False, server_default=sa.text("'{}'")))


def downgrade() -> None:
    with op.batch_alter_table("critiques") as batch:
        batch.drop_column("usage")
        batch.drop_column("error")
        batch.drop_column("uncertainty")
