"""Alembic environment: opd runs migrations itself, on a connection it passes in."""

from alembic import context

from opd.trajectories.schema import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=connection.dialect.name == "sqlite")
context.run_migrations()
