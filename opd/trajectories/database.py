"""Opening a store's database: URL handling, SQLite settings, validation and migrations.

SQLite is set up for many processes at once: WAL (readers never block the
writer), a busy timeout (a writer waits for another instead of failing with
"database is locked"), and write transactions that take the write lock up front
(``BEGIN IMMEDIATE``), so a transaction never fails half-way when it upgrades
from reading to writing. PostgreSQL needs none of this; the same code runs on it,
except that migrating takes an advisory lock first: processes that open one new
database at once (the ranks of a training job) would otherwise all create the
tables and all but one fail.

Before anything is written, the database is checked: a file that is not SQLite,
a corrupt or foreign database, or a schema newer than this code each raise a
clear :class:`~opd.errors.StoreError` and leave the file untouched. An older
opd schema is migrated with alembic inside one transaction: all or nothing.
A store already at the current schema is opened without importing alembic
(about a quarter of what opening a store costs a command such as `opd runs list`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import sqlite3
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.pool import StaticPool

from opd.errors import ConfigError, NotAStoreError, SchemaTooNewError, StoreError, StoreNotFoundError

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

logger = logging.getLogger(__name__)

_MIGRATIONS = Path(__file__).parent / "migrations"
_SQLITE_MAGIC = b"SQLite format 3\x00"
_OPD_TABLES = {"runs", "episodes", "steps"}
# The newest revision in migrations/versions (a test checks it is alembic's head): a store recorded at it needs no migration.
SCHEMA_HEAD = "0004"


@dataclasses.dataclass(frozen=True)
class Engines:
    """A reading and a writing engine over the same database (the same engine on PostgreSQL)."""

    url: str
    read: Engine
    write: Engine

    @property
    def is_sqlite(self) -> bool:
        return self.write.dialect.name == "sqlite"

    def dispose(self) -> None:
        self.read.dispose()
        if self.write is not self.read:
            self.write.dispose()


def normalise_url(location: str | Path) -> str:
    """A path becomes a ``sqlite:///`` URL; URLs pass through."""
    text = str(location)
    if "://" in text:
        return text
    return f"sqlite:///{Path(text).expanduser().resolve()}"


def open_engines(location: str | Path, *, create: bool, busy_timeout_s: float, read_only: bool = False) -> Engines:
    """Engines over the store at ``location``, checked and migrated to the current schema.

    ``read_only``: engines the database itself keeps from writing (SQLite ``mode=ro``, PostgreSQL
    read-only transactions); nothing is migrated, so a store at an older schema is refused instead.
    """
    url = normalise_url(location)
    engines = _read_only_engines(url, busy_timeout_s) if read_only else _engines(url, create, busy_timeout_s)
    try:
        if read_only:
            _check_current(engines, display=url)
        else:
            migrate(engines, display=url)
    except BaseException:
        engines.dispose()
        raise
    return engines


def _engines(url: str, create: bool, busy_timeout_s: float) -> Engines:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        engine = sa.create_engine(url, pool_pre_ping=True)
        return Engines(url, engine, engine)
    path = parsed.database
    if path and path != ":memory:":
        _check_sqlite_file(Path(path), create=create)
        return Engines(url, _sqlite_engine(url, busy_timeout_s, write=False), _sqlite_engine(url, busy_timeout_s, write=True))
    engine = _sqlite_engine(url, busy_timeout_s, write=True)  # an in-memory database exists once, on one connection
    return Engines(url, engine, engine)


def _read_only_engines(url: str, busy_timeout_s: float) -> Engines:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        # libpq's options: every transaction of the session is READ ONLY, so the server refuses any write.
        connect_args = {"options": "-c default_transaction_read_only=on"} if parsed.get_backend_name() == "postgresql" else {}
        engine = sa.create_engine(url, pool_pre_ping=True, connect_args=connect_args)
        return Engines(url, engine, engine)
    path = parsed.database
    if not path or path == ":memory:":
        raise ConfigError("An in-memory store cannot be opened read-only: it would always be empty. Give a file or a URL.")
    _check_sqlite_file(Path(path), create=False)
    engine = _sqlite_engine(f"sqlite:///file:{quote(path)}?mode=ro&uri=true", busy_timeout_s, write=False, read_only=True)
    return Engines(url, engine, engine)


def _check_current(engines: Engines, *, display: str) -> None:
    """A store opened read-only must already be an opd store at the current schema (it cannot be migrated)."""
    try:
        with engines.read.connect() as connection:
            tables = set(sa.inspect(connection).get_table_names())
            current = _current_revision(connection, tables)
    except sa.exc.DatabaseError as exc:
        raise NotAStoreError(f"{display} is corrupt or not a readable database ({exc.orig}); it was left untouched.") from exc
    if not tables:
        raise NotAStoreError(f"{display} is empty: no trajectory store was ever written there.")
    _check_ownership(display, tables, current)
    if current != SCHEMA_HEAD:
        raise StoreError(
            f"{display} has the older schema {current!r}; opening it read-only cannot migrate it. "
            f"Migrate it once with a command that may write, e.g. `opd episodes list --store {display}`."
        )


def _check_sqlite_file(path: Path, *, create: bool) -> None:
    if not path.exists():
        if not create:
            raise StoreNotFoundError(f"No trajectory store at {path}. Check the path, or write episodes there first (e.g. `opd demo`).")
        path.parent.mkdir(parents=True, exist_ok=True)
        return
    if path.is_dir():
        raise NotAStoreError(f"{path} is a directory, not a trajectory store file.")
    with path.open("rb") as handle:
        header = handle.read(len(_SQLITE_MAGIC))
    if header and header != _SQLITE_MAGIC:
        raise NotAStoreError(f"{path} is not a SQLite database, so it cannot be a trajectory store. Pass the store's .db file.")
    if header:
        _check_read_only(path)


def _check_read_only(path: Path) -> None:
    """Look at an existing file without changing a byte (opening it for real would switch it to WAL)."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as raw:
            tables = {row[0] for row in raw.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            raw.execute("PRAGMA quick_check").fetchall()
            current = raw.execute("SELECT version_num FROM alembic_version").fetchone() if "alembic_version" in tables else None
    except sqlite3.DatabaseError as exc:
        raise NotAStoreError(f"{path} is corrupt or not a SQLite database ({exc}); it was left untouched.") from exc
    _check_ownership(str(path), tables, current[0] if current else None)


def _check_ownership(display: str, tables: set[str], current: str | None) -> None:
    if current is None and tables - {"alembic_version"}:
        found = ", ".join(sorted(tables)[:8])
        raise NotAStoreError(f"{display} is a database that opd did not write (tables: {found}); use a new file for the store.")
    if current is not None and current != SCHEMA_HEAD and current not in _known_revisions():
        raise SchemaTooNewError(
            f"{display} has schema revision {current!r}, newer than this opd knows (head {_script().get_current_head()!r}). "
            "Upgrade opd (pip install -U opd) to read it."
        )


def _current_revision(connection: sa.Connection, tables: set[str]) -> str | None:
    """The schema revision the database records (alembic's own table, read with plain SQL), or None."""
    if "alembic_version" not in tables:
        return None
    return connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()


def _config() -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    return config


def _script() -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_config())


def _known_revisions() -> set[str]:
    return {revision.revision for revision in _script().walk_revisions()}


def _sqlite_engine(url: str, busy_timeout_s: float, *, write: bool, read_only: bool = False) -> Engine:
    memory = make_url(url).database in (None, "", ":memory:")
    options: dict[str, Any] = {"connect_args": {"check_same_thread": False}}
    if memory:  # one shared connection, or each connection would see its own empty database
        options["poolclass"] = StaticPool
    engine = sa.create_engine(url, **options)

    @event.listens_for(engine, "connect")
    def configure(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # the driver's implicit BEGIN would defeat BEGIN IMMEDIATE
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
        if read_only:  # mode=ro already refuses writes; query_only also refuses them on this connection
            cursor.execute("PRAGMA query_only = ON")
        else:
            cursor.execute("PRAGMA foreign_keys = ON")
            if not memory:
                _enable_wal(cursor, busy_timeout_s)
                cursor.execute("PRAGMA synchronous = NORMAL")  # with WAL: durable against process crashes
        cursor.close()

    @event.listens_for(engine, "begin")
    def begin(connection: sa.Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


def _enable_wal(cursor: Any, timeout_s: float) -> None:
    """Switch to WAL, waiting out other processes doing the same to a new file.

    Changing the journal mode needs an exclusive lock, and SQLite reports "database is
    locked" at once instead of honouring busy_timeout, so two processes opening one new
    store together would otherwise fail (seen: 6 of 15 trials).
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


_MIGRATION_LOCK = 0x6F70_645F_7374_6F72  # "opd_stor": one advisory-lock key for opd's migrations


def migrate(engines: Engines, *, display: str) -> None:
    """Bring the schema to head in one write transaction, after checking the database is ours."""
    try:
        if _is_current(engines):
            return
        from alembic import command

        config = _config()
        with engines.write.begin() as connection:
            if connection.dialect.name == "postgresql":  # released at commit; SQLite's BEGIN IMMEDIATE already serialises
                connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
            # Checked again under the write lock: another process may have changed the file since.
            tables = set(sa.inspect(connection).get_table_names())
            current = _current_revision(connection, tables)
            _check_ownership(display, tables, current)
            if current != SCHEMA_HEAD:
                if current is not None:
                    logger.info("Migrating trajectory store %s from schema %s to %s", display, current, SCHEMA_HEAD)
                config.attributes["connection"] = connection
                command.upgrade(config, "head")
            elif not tables >= _OPD_TABLES:
                raise NotAStoreError(f"{display} claims schema {current!r} but lacks opd's tables; it is damaged.")
    except sa.exc.DatabaseError as exc:
        if "file is not a database" in str(exc) or "malformed" in str(exc):
            raise NotAStoreError(f"{display} is corrupt or not a SQLite database ({exc.orig}); it was left untouched.") from exc
        raise


def _is_current(engines: Engines) -> bool:
    """Whether the database already holds opd's tables at ``SCHEMA_HEAD``: then there is nothing to migrate or lock."""
    with engines.read.connect() as connection:
        tables = set(sa.inspect(connection).get_table_names())
        return tables >= _OPD_TABLES and _current_revision(connection, tables) == SCHEMA_HEAD
