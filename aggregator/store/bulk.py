"""Statements sent straight to the database driver, for the hot paths of story assignment.

Storing one entry writes about 75 index rows (44 LSH bands, segment counts) and looks up
44 bands; SQLAlchemy's per-row parameter handling cost more than the database work itself.
The statements are still built with SQLAlchemy (so they are right for SQLite and PostgreSQL
alike) and compiled once per dialect; only the parameters bypass it, so they must already be
what the driver takes: plain numbers and strings, datetimes through `db_time`.
"""

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from operator import itemgetter
from typing import Any, NamedTuple

from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

from aggregator.store.schema import UTCDateTime


class _Compiled(NamedTuple):
    statement: ClauseElement
    sql: str
    #: Bound values the statement carries itself (LIMITs); working them out is costly, and
    #: they never change.
    defaults: dict[str, Any]
    positions: Sequence[str] | None


#: (id of the statement, dialect) -> the statement compiled. The statement is kept with it:
#: an id is reused once its object is gone, and must never find another's SQL.
_compiled: dict[tuple[int, str], _Compiled] = {}


def _compile(conn: Connection, stmt: ClauseElement) -> _Compiled:
    key = (id(stmt), conn.dialect.name)
    cached = _compiled.get(key)
    if cached is None or cached.statement is not stmt:
        compiled = stmt.compile(dialect=conn.dialect)
        assert isinstance(compiled, SQLCompiler)
        cached = _Compiled(stmt, compiled.string, dict(compiled.params), compiled.positiontup)
        _compiled[key] = cached
    return cached


def _params(compiled: _Compiled, rows: Sequence[Mapping[str, Any]]) -> list[Any]:
    """The rows as the driver takes them: tuples in the SQL's order, or dicts (named style)."""
    if compiled.defaults:
        rows = [{**compiled.defaults, **row} for row in rows]
    if not compiled.positions:
        return list(rows)
    pick = itemgetter(*compiled.positions)  # one C call per row, not a generator
    if len(compiled.positions) == 1:
        return [(pick(row),) for row in rows]
    return [pick(row) for row in rows]


def executemany(conn: Connection, stmt: ClauseElement, rows: Sequence[Mapping[str, Any]]) -> None:
    """Run `stmt` once per row (each row names every bound parameter)."""
    if rows:
        compiled = _compile(conn, stmt)
        conn.exec_driver_sql(compiled.sql, _params(compiled, rows))


def scalars(conn: Connection, stmt: ClauseElement, values: Mapping[str, Any]) -> list[Any]:
    """The first column of every row of `stmt` (fetched at once: rows one by one cost more)."""
    compiled = _compile(conn, stmt)
    return list(conn.exec_driver_sql(compiled.sql, _params(compiled, [values])[0]).scalars().all())


def insert_id(conn: Connection, stmt: ClauseElement, values: Mapping[str, Any]) -> int:
    """Run an `INSERT ... RETURNING id` for one row; the new row's id."""
    compiled = _compile(conn, stmt)
    return int(conn.exec_driver_sql(compiled.sql, _params(compiled, [values])[0]).scalar_one())


def db_time(conn: Connection, value: datetime | None) -> Any:
    """A datetime exactly as the store's UTCDateTime columns hand it to this driver (on SQLite
    the text SQLAlchemy writes, so rows written either way compare and sort alike)."""
    return _time_processor(conn.dialect)(value)


#: Dialect name -> UTCDateTime's bind processor for it.
_processors: dict[str, Callable[[Any], Any]] = {}


def _time_processor(dialect: Dialect) -> Callable[[Any], Any]:
    found = _processors.get(dialect.name)
    if found is None:
        processor = UTCDateTime().dialect_impl(dialect).bind_processor(dialect)
        assert processor is not None  # UTCDateTime always converts
        found = _processors[dialect.name] = processor
    return found
