"""Fast multi-row inserts: SQLAlchemy's own SQL and type processing, without its per-call overhead.

Writing an episode is a handful of inserts of many rows each, inside one
transaction. Through ``connection.execute(table.insert(), rows)`` SQLAlchemy
re-derives parameter processing on every call, which costs more than the
insert itself at these sizes (see benchmarks/store.py). Here the statement is
compiled once per table and dialect, and each value goes through the same
bind processor SQLAlchemy would apply (JSON encoding, datetime formatting), so
the stored bytes are identical.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa


@dataclasses.dataclass(frozen=True)
class BulkInsert:
    sql: str
    columns: tuple[str, ...]  # in the order the driver expects for positional parameter styles
    processors: tuple[Callable[[Any], Any] | None, ...]
    positional: bool

    @classmethod
    def compile(cls, table: sa.Table, dialect: sa.Dialect) -> BulkInsert:
        names = [c.name for c in table.columns if not (c.primary_key and isinstance(c.type, sa.Integer))]  # surrogate keys autoincrement
        statement = table.insert().values({name: sa.bindparam(name) for name in names})
        compiled = statement.compile(dialect=dialect)
        columns = tuple(compiled.positiontup) if compiled.positional else tuple(names)
        processors = tuple(table.c[name].type.dialect_impl(dialect).bind_processor(dialect) for name in columns)
        return cls(str(compiled), columns, processors, compiled.positional)

    def run(self, connection: sa.Connection, rows: Sequence[dict[str, Any]]) -> None:
        if not rows:
            return
        pairs = list(zip(self.columns, self.processors, strict=True))
        if self.positional:
            params: list[Any] = [tuple(p(row[c]) if p else row[c] for c, p in pairs) for row in rows]
        else:
            params = [{c: p(row[c]) if p else row[c] for c, p in pairs} for row in rows]
        connection.exec_driver_sql(self.sql, params)
