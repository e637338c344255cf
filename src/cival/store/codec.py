"""Values to and from each dialect's columns, by the column kinds of :mod:`cival.store.schema`.

PostgreSQL takes Python values as they are (Decimal for NUMERIC, aware datetimes for
timestamptz) and JSON as text; SQLite keeps money as exact decimal text, times as ISO
8601 UTC text, JSON as text and booleans as 0/1. Reading back gives the same Python
values in both.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from cival.core.fmt import parse_time, stored_time
from cival.store.schema import COLUMNS, KEYS, column_kind


def _money(value: Any) -> Decimal:
    if isinstance(value, Decimal):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"a money column cannot hold {value}")
        return Decimal(repr(value))  # exact: the float's shortest repr reads back as the same float
    return Decimal(value)


def encode(kind: str, value: Any, dialect: str) -> Any:
    """A Python value for a column of ``kind`` in ``dialect``."""
    if value is None:
        return None
    if kind == "money":
        d = _money(value)
        return d if dialect == "postgres" else str(d)
    if kind == "time":
        return value.astimezone(UTC) if dialect == "postgres" else stored_time(value)
    if kind == "json":
        return json.dumps(value, separators=(",", ":"))
    if kind == "bool":
        return bool(value) if dialect == "postgres" else int(bool(value))
    if kind == "float":
        return float(value) if math.isfinite(value) else None
    return value


def decode(kind: str, value: Any) -> Any:
    """Back from either dialect to the Python value."""
    if value is None:
        return None
    if kind == "money":
        return value if isinstance(value, Decimal) else Decimal(value)
    if kind == "time":
        return value.astimezone(UTC) if isinstance(value, datetime) else parse_time(value)
    if kind == "json":
        return json.loads(value) if isinstance(value, str) else value
    if kind == "bool":
        return bool(value)
    if kind == "bytes":
        return bytes(value)
    return value


_PLAIN = {"text", "int", "bigint", "bytes"}
"""Kinds both dialects take as they are."""

_SPECS: dict[str, list[tuple[str, str, bool]]] = {
    table: [(name, *column_kind(spec)) for name, spec in columns] for table, columns in COLUMNS.items()
}


def row_values(table: str, row: dict[str, Any], dialect: str) -> tuple[Any, ...]:
    """A row dict as a tuple in the table's column order (missing nullable columns: NULL)."""
    out = []
    for name, kind, nullable in _SPECS[table]:
        value = row.get(name)
        if value is None:
            if not nullable and name not in row:
                raise KeyError(f"{table}: a row needs {name!r}")
            out.append(None)
        elif kind in _PLAIN:
            out.append(value)
        else:
            out.append(encode(kind, value, dialect))
    return tuple(out)


def column_names(table: str, columns: Sequence[str] | None = None) -> list[str]:
    """The columns of ``table`` to read: ``columns`` (each one of the table's), else all of them."""
    names = [n for n, _ in COLUMNS[table]]
    if columns is None:
        return names
    unknown = [c for c in columns if c not in names]
    if unknown:
        raise ValueError(f"{table} has no column {', '.join(map(repr, unknown))}")
    return list(columns)


def decode_row(table: str, names: Sequence[str], values: Sequence[Any]) -> dict[str, Any]:
    kinds = {name: column_kind(spec)[0] for name, spec in COLUMNS[table]}
    return {n: decode(kinds.get(n, "text"), v) for n, v in zip(names, values, strict=True)}


def insert_sql(table: str, dialect: str) -> str:
    """INSERT of a whole row that leaves a row with the same key as it is."""
    names = [n for n, _ in COLUMNS[table]]
    marks = ", ".join(f"${i}" if dialect == "postgres" else "?" for i in range(1, len(names) + 1))
    conflict = " ON CONFLICT DO NOTHING"
    return f"INSERT INTO {table} ({', '.join(names)}) VALUES ({marks}){conflict}"


def update_sql(table: str, columns: Sequence[str], dialect: str) -> str:
    """UPDATE of ``columns`` by the table's key; parameters: the columns, then the key."""
    key = KEYS[table]
    mark = (lambda i: f"${i}") if dialect == "postgres" else (lambda i: "?")
    sets = ", ".join(f"{c} = {mark(i)}" for i, c in enumerate(columns, start=1))
    where = " AND ".join(f"{k} = {mark(len(columns) + i)}" for i, k in enumerate(key, start=1))
    return f"UPDATE {table} SET {sets} WHERE {where}"


def update_values(table: str, row: dict[str, Any], dialect: str) -> tuple[list[str], tuple[Any, ...]]:
    kinds = {name: column_kind(spec)[0] for name, spec in COLUMNS[table]}
    key = KEYS[table]
    columns = [c for c in row if c not in key]
    values = [encode(kinds[c], row[c], dialect) for c in columns]
    values += [encode(kinds[k], row[k], dialect) for k in key]
    return columns, tuple(values)


__all__ = ["column_names", "decode", "decode_row", "encode", "insert_sql", "row_values", "update_sql", "update_values"]
