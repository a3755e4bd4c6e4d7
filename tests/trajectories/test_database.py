"""Opening stores: migrations, and every kind of bad file, each with a clear error and the file left untouched."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from trajectory_factories import make_episode

from opd.errors import NotAStoreError, SchemaTooNewError, StoreNotFoundError
from opd.trajectories import Run, TrajectoryStore
from opd.trajectories.database import _MIGRATIONS, SCHEMA_HEAD
from opd.trajectories.schema import metadata


def alembic_config(connection: sa.Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def test_migrations_build_exactly_the_tables_the_code_uses(tmp_path: Path) -> None:
    TrajectoryStore(tmp_path / "s.db").close()
    engine = sa.create_engine(f"sqlite:///{tmp_path / 's.db'}")
    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection, opts={"compare_type": True}), metadata)
    assert diff == []


def test_a_store_at_the_first_schema_is_migrated_with_its_data(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    engine = sa.create_engine(f"sqlite:///{path}")
    with engine.begin() as connection:
        command.upgrade(alembic_config(connection), "0001")
        connection.execute(sa.text("INSERT INTO runs VALUES ('r1', 'old run', '{}', '0.0.1', '2026-01-01 00:00:00')"))
        connection.execute(
            sa.text(
                "INSERT INTO episodes (id, run_id, suite, task_id, seed, reward, success, termination, num_steps, num_tokens, "
                "env_options, initial_messages, policy_model, teacher_models, tokenizer, chat_template_hash, sandbox, created_at) "
                "VALUES ('e1', 'r1', 'calculator', 't', 1, 1.0, 1, 'final_answer', 0, 0, '{}', '[]', 'm', '[]', 'tok', 'h', '{}', "
                "'2026-01-01 00:00:00')"
            )
        )
    engine.dispose()
    with TrajectoryStore(path) as store:
        old = store.get_episode("e1")
        assert old.writer == {} and old.suite == "calculator" and old.created_at.tzinfo is not None
        assert old.parent_id is None and old.branch_step is None and not old.annotations.routes  # revision 0004
        store.write_episode(make_episode(np.random.default_rng(0), store.add_run(Run())))
        assert store.count_episodes() == 2
    with sqlite3.connect(path) as raw:
        head = ScriptDirectory.from_config(alembic_config(None)).get_current_head()
        assert raw.execute("SELECT version_num FROM alembic_version").fetchall() == [(head,)]


def test_the_schema_head_the_code_knows_is_alembics_head() -> None:
    # A new revision in migrations/versions must move SCHEMA_HEAD too, or a current store would be refused read-only as old.
    assert ScriptDirectory.from_config(alembic_config(None)).get_current_head() == SCHEMA_HEAD


def test_a_current_store_opens_without_importing_alembic(tmp_path: Path) -> None:
    TrajectoryStore(tmp_path / "s.db").close()
    code = (
        "import sys\nfrom opd.trajectories import TrajectoryStore\n"
        f"TrajectoryStore({str(tmp_path / 's.db')!r}).close()\nTrajectoryStore({str(tmp_path / 's.db')!r}, read_only=True).close()\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'alembic'))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "[]"  # alembic costs about 0.35 s of CPU, a quarter of what `opd runs list` spends on the store


def test_a_schema_newer_than_the_code_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    TrajectoryStore(path).close()
    with sqlite3.connect(path) as raw:
        raw.execute("UPDATE alembic_version SET version_num = '9999'")
    before = path.read_bytes()
    with pytest.raises(SchemaTooNewError, match="'9999', newer than this opd knows.*Upgrade opd"):
        TrajectoryStore(path)
    assert path.read_bytes() == before


def test_a_missing_store_is_an_error_when_reading(tmp_path: Path) -> None:
    with pytest.raises(StoreNotFoundError, match="No trajectory store at .*missing.db"):
        TrajectoryStore(tmp_path / "missing.db", create=False)
    assert not (tmp_path / "missing.db").exists()


def test_a_file_that_is_not_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_text("these are my notes, not a database\n")
    with pytest.raises(NotAStoreError, match="notes.db is not a SQLite database"):
        TrajectoryStore(path)
    assert path.read_text() == "these are my notes, not a database\n"


def test_a_foreign_sqlite_database(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    with sqlite3.connect(path) as raw:
        raw.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    before = path.read_bytes()
    with pytest.raises(NotAStoreError, match="opd did not write \\(tables: users\\)"):
        TrajectoryStore(path)
    assert path.read_bytes() == before


def test_a_corrupt_database(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.db"
    with TrajectoryStore(path) as store:
        store.write_episode(make_episode(np.random.default_rng(0), store.add_run(Run())))
    data = bytearray(path.read_bytes())
    data[100:4096] = b"\xff" * (4096 - 100)  # the first page's b-tree header and cells
    path.write_bytes(bytes(data))
    with pytest.raises(NotAStoreError, match="corrupt"):
        TrajectoryStore(path)


def test_a_directory_is_not_a_store(tmp_path: Path) -> None:
    with pytest.raises(NotAStoreError, match="is a directory"):
        TrajectoryStore(tmp_path)


def test_sqlite_settings(file_store: TrajectoryStore) -> None:
    with file_store._engines.write.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 60_000
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
