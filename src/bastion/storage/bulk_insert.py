"""Inserts into SQLite compiled once and run on the driver's cursor: the gateway's audit writer inserts a few
rows before every answer, and SQLAlchemy Core's per-statement work (the cache key, the execution context,
each JSON column written by the standard library's encoder) cost more than SQLite's own.

:class:`SqliteBulkInsert` keeps SQLAlchemy's SQL and storage format: the statement is SQLAlchemy's, compiled
for SQLite, and every value goes through its column type's bind processor, except JSON columns, which
orjson writes (the same values read back; the text may spell small floats differently from the standard
library, ``0.00005`` for ``5e-05``). orjson writes ``NaN`` and infinities as ``null`` (so does the audit
log's hash in its current format, so the hash covers what is stored). Other databases keep
SQLAlchemy Core (PostgreSQL's driver wants JSON as its own wrapper type, and its round trip dominates).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import orjson
from sqlalchemy import JSON, Connection, Table, insert
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError


def json_text(value: Any) -> str:
    """``value`` as JSON text by orjson (the standard library's for types orjson does not know); ``None`` is the
    JSON ``null``, as SQLAlchemy's ``JSON`` type stores it by default."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return json.dumps(value)


class SqliteBulkInsert:
    """``INSERT INTO table`` of whole rows (a value for every column; other keys are ignored), compiled once for
    ``dialect``, a SQLite engine's dialect (its own options, such as how it stores times, apply).

    Args:
        table: the table.
        dialect: the dialect of the connections it will run on (``engine.dialect``).
        skip_duplicates_of: a unique column: rows whose value is already there are skipped (``ON CONFLICT
            DO NOTHING``).

    Raises:
        ValueError: ``dialect`` is not SQLite's.
    """

    def __init__(self, table: Table, dialect: Dialect, *, skip_duplicates_of: str | None = None) -> None:
        if dialect.name != "sqlite":
            raise ValueError(f"SqliteBulkInsert runs on SQLite, not {dialect.name}")
        self.dialect = dialect
        statement = insert(table)
        if skip_duplicates_of is not None:
            statement = sqlite.insert(table).on_conflict_do_nothing(index_elements=[table.columns[skip_duplicates_of]])
        compiled = statement.compile(dialect=dialect, column_keys=[column.key for column in table.columns])
        self.sql = str(compiled)
        processors = compiled._bind_processors  # noqa: SLF001 - the types' own converters, as Core applies them
        self.columns: list[tuple[str, Callable[[Any], Any] | None]] = []
        for name in compiled.positiontup:
            column = table.columns[compiled.binds[name].key]
            self.columns.append((column.key, json_text if isinstance(column.type, JSON) else processors.get(name)))

    def execute(self, connection: Connection, rows: list[dict[str, Any]]) -> None:
        """Insert ``rows`` (dicts by column key) inside ``connection``'s transaction.

        Raises:
            ValueError: ``connection`` is of another dialect than the one compiled for.
            KeyError: a row lacks a column.
            sqlalchemy.exc.DBAPIError: what SQLite refused, as SQLAlchemy Core raises it (``IntegrityError`` for a
                duplicate key, ``OperationalError`` for a locked database), so callers handle both paths alike.
        """
        if connection.dialect is not self.dialect:
            raise ValueError(f"this insert was compiled for another dialect than the connection's "
                             f"({connection.dialect.name}); make one per engine")
        if not rows:
            return
        parameters = [tuple(convert(row[key]) if convert else row[key] for key, convert in self.columns)
                      for row in rows]
        driver = connection.dialect.loaded_dbapi
        cursor = connection.connection.cursor()
        try:
            cursor.executemany(self.sql, parameters)
        except driver.Error as error:
            raise DBAPIError.instance(self.sql, parameters, error, driver.Error) from error
        finally:
            cursor.close()
