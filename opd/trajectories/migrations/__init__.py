"""Alembic migrations of the trajectory store, applied by ``TrajectoryStore`` on open."""
