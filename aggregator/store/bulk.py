"""Statements sent straight to the database driver, for the hot paths of story assignment.

Storing one entry writes about a hundred index rows (LSH bands, segment counts) and looks up
64 bands; SQLAlchemy's per-row parameter handling cost more than the database work itself.
The statements are still built with SQLAlchemy (so they are right for SQLite and PostgreSQL
alike) and compiled once per dialect; only the parameters bypass it, so they must already be
what the driver takes: plain numbers and strings, datetimes through `db_time`.
"""

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

from aggregator.store.schema import UTCDateTime

#: (id of the statement, dialect) -> the statement and its compiled form. The statement is
#: kept with it: an id is reused once its object is gone, and must never find another's SQL.
_compiled: dict[tuple[int, str], tuple[ClauseElement, SQLCompiler]] = {}


def _compile(conn: Connection, stmt: ClauseElement) -> SQLCompiler:
    key = (id(stmt), conn.dialect.name)
    cached = _compiled.get(key)
    if cached is None or cached[0] is not stmt:
        compiled = stmt.compile(dialect=conn.dialect)
        assert isinstance(compiled, SQLCompiler)
        cached = _compiled[key] = (stmt, compiled)
    return cached[1]


def _params(compiled: SQLCompiler, values: Mapping[str, Any]) -> Any:
    merged = {**compiled.params, **values}  # bound values the statement carries (LIMITs)
    if compiled.positiontup:
        return tuple(merged[name] for name in compiled.positiontup)
    return merged


def executemany(conn: Connection, stmt: ClauseElement, rows: Sequence[Mapping[str, Any]]) -> None:
    """Run `stmt` once per row (each row names every bound parameter)."""
    if rows:
        compiled = _compile(conn, stmt)
        conn.exec_driver_sql(compiled.string, [_params(compiled, row) for row in rows])


def scalars(conn: Connection, stmt: ClauseElement, values: Mapping[str, Any]) -> list[Any]:
    """The first column of every row of `stmt`."""
    compiled = _compile(conn, stmt)
    return [row[0] for row in conn.exec_driver_sql(compiled.string, _params(compiled, values))]


def db_time(conn: Connection, value: datetime) -> datetime | None:
    """A datetime as the store's UTCDateTime columns hand it to this driver."""
    return UTCDateTime().process_bind_param(value, conn.dialect)
