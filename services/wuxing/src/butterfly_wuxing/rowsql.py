"""Hand-written SQL for the statements every value write runs (an instance and its items by
key, the item's new value, the instance's touch, the history rows).

Why: peewee builds a query's SQL anew on every call, about 0.3 ms of CPU per statement -
profiled, half of a CAS write's CPU on MariaDB went there. These statements have a fixed
shape, so their text is built once per database (its quote and placeholder) from the
models' columns, and values pass through the fields' own ``db_value`` / ``python_value``
as peewee would.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from functools import cache
from typing import Any, TypeVar

import peewee

from butterfly_common import db

from .models import History, Instance, Item

M = TypeVar("M", bound=peewee.Model)


_dialects: dict[type, tuple[str, str, bool]] = {}


def _now_dialect() -> tuple[str, str, bool]:
    """``(quote, placeholder, mysql)`` of the bound database."""
    real = db.database.obj
    kind = type(real)
    found = _dialects.get(kind)
    if found is None:
        found = _dialects[kind] = (real.quote[0], real.param,
                                   not isinstance(real, peewee.SqliteDatabase))
    return found


@cache
def _select(model: type[peewee.Model], keys: tuple[str, ...], in_count: int, lock: bool,
            dialect: tuple[str, str, bool]) -> str:
    q, p, mysql = dialect
    cols = ", ".join(f"{q}{f.column_name}{q}" for f in model._meta.sorted_fields)
    where = " AND ".join(f"{q}{k}{q} = {p}" for k in keys)
    if in_count:
        where += f" AND {q}item_name{q} IN ({', '.join([p] * in_count)})"
    table = model._meta.table_name
    return (f"SELECT {cols} FROM {q}{table}{q} WHERE {where}"  # noqa: S608
            + (" FOR UPDATE" if lock and mysql else ""))


def _rows(model: type[M], sql: str, params: Sequence[Any]) -> list[M]:
    fields = model._meta.sorted_fields
    return [_model(model, fields, row) for row in db.database.execute_sql(sql, params)]


def instance(namespace: str, instance_name: str, *, lock: bool = False) -> Instance | None:
    """The instance row (``lock``: ``FOR UPDATE`` on MySQL, until the transaction ends)."""
    sql = _select(Instance, ("namespace", "instance_name"), 0, lock, _now_dialect())
    found = _rows(Instance, sql, (namespace, instance_name))
    return found[0] if found else None


def items(namespace: str, instance_name: str, names: Sequence[str], *,
          lock: bool = False) -> dict[str, Item]:
    """The instance's item rows named ``names``, by name (``lock`` as in :func:`instance`)."""
    if not names:
        return {}
    sql = _select(Item, ("namespace", "instance_name"), len(names), lock, _now_dialect())
    return {row.item_name: row for row in _rows(Item, sql, (namespace, instance_name, *names))}


@cache
def _joined(in_count: int, dialect: tuple[str, str, bool]) -> str:
    q, p, _ = dialect
    cols = ", ".join([f"a.{q}{f.column_name}{q}" for f in Instance._meta.sorted_fields]
                     + [f"b.{q}{f.column_name}{q}" for f in Item._meta.sorted_fields])
    return (f"SELECT {cols} FROM {q}{Instance._meta.table_name}{q} AS a "  # noqa: S608
            f"LEFT JOIN {q}{Item._meta.table_name}{q} AS b "
            f"ON b.{q}namespace{q} = a.{q}namespace{q} "
            f"AND b.{q}instance_name{q} = a.{q}instance_name{q} "
            f"AND b.{q}item_name{q} IN ({', '.join([p] * in_count)}) "
            f"WHERE a.{q}namespace{q} = {p} AND a.{q}instance_name{q} = {p}")


def _model(model: type[M], fields: Sequence[peewee.Field], values: Sequence[Any]) -> M:
    return model(**{f.name: (None if v is None else f.python_value(v))
                    for f, v in zip(fields, values, strict=True)})


def instance_items(namespace: str, instance_name: str, names: Sequence[str]
                   ) -> tuple[Instance | None, dict[str, Item]]:
    """The instance row and its items named ``names`` (by name), in one round trip."""
    if not names:
        return instance(namespace, instance_name), {}
    sql = _joined(len(names), _now_dialect())
    first = Instance._meta.sorted_fields
    second = Item._meta.sorted_fields
    found: Instance | None = None
    rows: dict[str, Item] = {}
    for row in db.database.execute_sql(sql, (*names, namespace, instance_name)).fetchall():
        if found is None:
            found = _model(Instance, first, row[:len(first)])
        if row[len(first)] is not None:
            item = _model(Item, second, row[len(first):])
            rows[item.item_name] = item
    return found, rows


@cache
def _update(model: type[peewee.Model], columns: tuple[str, ...], guarded: bool,
            dialect: tuple[str, str, bool]) -> str:
    q, p, _ = dialect
    sets = ", ".join(f"{q}{c}{q} = {p}" for c in columns)
    where = f"{q}id{q} = {p}" + (f" AND {q}revision{q} = {p}" if guarded else "")
    return f"UPDATE {q}{model._meta.table_name}{q} SET {sets} WHERE {where}"  # noqa: S608


def update(model: type[peewee.Model], row_id: int, fields: Mapping[str, Any],
           *, revision: int | None = None) -> bool:
    """``UPDATE model SET fields WHERE id = row_id`` (``AND revision = revision`` when
    given), the values through their fields; False when no row matched."""
    columns = tuple(fields)
    meta = model._meta.fields
    params = [meta[c].db_value(v) for c, v in fields.items()]
    params.append(row_id)
    if revision is not None:
        params.append(revision)
    sql = _update(model, columns, revision is not None, _now_dialect())
    return bool(db.database.execute_sql(sql, params).rowcount)


@cache
def _insert(columns: tuple[str, ...], count: int, dialect: tuple[str, str, bool]) -> str:
    q, p, _ = dialect
    one = "(" + ", ".join([p] * len(columns)) + ")"
    names = ", ".join(f"{q}{c}{q}" for c in columns)
    return (f"INSERT INTO {q}{History._meta.table_name}{q} ({names}) "  # noqa: S608
            f"VALUES {', '.join([one] * count)}")


def insert_history(rows: Iterable[Mapping[str, Any]]) -> None:
    """One multi-row INSERT of history rows (each carries every column it sets)."""
    rows = list(rows)
    if not rows:
        return
    columns = tuple(rows[0])
    meta = History._meta.fields
    fields = [meta[c] for c in columns]
    params = [f.db_value(row[f.name]) for row in rows for f in fields]
    # SQLite allows 32 766 variables a statement; a big write (an import) goes in parts
    per = max(1, 30000 // len(columns))
    for start in range(0, len(rows), per):
        part = rows[start:start + per]
        db.database.execute_sql(_insert(columns, len(part), _now_dialect()),
                                params[start * len(columns):(start + len(part)) * len(columns)])

