"""Selects on the hop's path whose SQL peewee builds once, not per call.

Building a select of a 40-column model costs peewee ~0.3-0.6 ms of CPU, and a hop (a
notice -> the next task published) reads twice. A :class:`Prepared` builds its query once
per database with placeholders, keeps the SQL, and per call binds the arguments and lets
the same query's cursor wrapper make the rows (model instances, joins included), so the
rows are exactly what the peewee query would have returned.

Making the rows was then a third of a notice's CPU on MariaDB (peewee's ``process_row``
sets every column through its field's descriptor and tracks what it set): once the
wrapper has made the first rows, a plain select (model columns only, inner joins onto
attributes) makes the next ones by :func:`_builder` - each instance's ``__data__`` filled
in one go with the same converters, the same instances and attributes as a result.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import peewee

from butterfly_common import db


class Prepared:
    """``build(*placeholders)`` -> a model select; :meth:`rows` runs it with arguments
    (database-ready values: ints and strings, no converters applied)."""

    def __init__(self, arity: int, build: Callable[..., peewee.SelectBase]) -> None:
        self.arity = arity
        self.build = build
        self._by_db: dict[int, tuple[Any, str, list[Any], list[int | None]]] = {}
        #: per database: the row builder (False: this query takes peewee's own wrapper)
        self._builders: dict[int, Callable[[list[tuple]], list[Any]] | bool] = {}
        self._lock = threading.Lock()

    def _compiled(self, database: peewee.Database
                  ) -> tuple[Any, str, list[Any], list[int | None]]:
        found = self._by_db.get(id(database))
        if found is None:
            marks = [f"\x00prepared{i}\x00" for i in range(self.arity)]
            query = self.build(*(peewee.Value(m, converter=False) for m in marks))
            sql, params = query.bind(database).sql()
            slots = [marks.index(p) if isinstance(p, str) and p in marks else None
                     for p in params]
            assert sorted(s for s in slots if s is not None) == list(range(self.arity)), \
                "every placeholder must be bound exactly once"
            found = (query, sql, list(params), slots)
            with self._lock:
                self._by_db[id(database)] = found
        return found

    def rows(self, *args: Any) -> list[Any]:
        """The query's rows for ``args``, as the peewee query would give them."""
        database = db.database.obj
        query, sql, params, slots = self._compiled(database)
        bound = [p if s is None else args[s] for p, s in zip(params, slots, strict=True)]
        cursor = database.execute_sql(sql, bound)
        build = self._builders.get(id(database))
        if callable(build):
            return build(cursor.fetchall())
        wrapper = query._get_cursor_wrapper(cursor)  # peewee internal: see the docstring
        rows = list(wrapper)
        if build is None and rows:  # the wrapper is initialized by its first row
            self._builders[id(database)] = _builder(wrapper) or False
        return rows


def _builder(cursor_wrapper: Any) -> Callable[[list[tuple]], list[Any]] | None:
    """``wrapper.process_row`` for every row, for the plain selects the hop makes (model
    columns only, each a field of its model; inner joins onto attributes); None for any
    other query (it keeps peewee's wrapper). peewee internals: see the module docstring."""
    wrapper: Any = cursor_wrapper  # its initialized internals, not in peewee's stubs
    if isinstance(cursor_wrapper, peewee.ModelObjectCursorWrapper):
        root = wrapper.model
        converted = set(wrapper.convert)
        spec = [(i, root, wrapper.unique_columns[i],
                 wrapper.converters[i] if i in converted else None)
                for i in range(wrapper.ncols)]
        ctors = [(root, wrapper.constructor)]
        joins: list[tuple[Any, str, Any]] = []
    elif isinstance(cursor_wrapper, peewee.ModelCursorWrapper):
        if any(is_dict or is_outer or is_fk
               for _, _, _, is_dict, is_outer, is_fk in wrapper.src_to_dest) \
                or not all(is_model for _, _, is_model in wrapper._constructor_list):
            return None
        root = wrapper.model
        spec = list(wrapper._row_spec)
        ctors = [(key, ctor) for key, ctor, _ in wrapper._constructor_list]
        joins = [(src, attr, dest) for src, attr, dest, *_ in wrapper.src_to_dest]
    else:
        return None
    fields = {key: ctor._meta.fields for key, ctor in ctors}
    if any(key not in fields or column not in fields[key] for _, key, column, _ in spec):
        return None
    made_of = [(key, ctor, [(i, column, conv) for i, k, column, conv in spec if k == key])
               for key, ctor in ctors]
    made_of = [m for m in made_of if m[2] or m[0] is root]  # unselected joins: nothing

    def build(rows: list[tuple]) -> list[Any]:
        out = []
        for row in rows:
            made: dict[Any, Any] = {}
            for key, ctor, columns in made_of:
                instance = ctor(__no_default__=True)
                instance.__data__ = {column: row[i] if conv is None else conv(row[i])
                                     for i, column, conv in columns}
                made[key] = instance
            for src, attr, dest in joins:
                joined = made.get(dest)
                # as process_row: an inner join's all-NULL side is not attached
                if joined is not None and src in made and any(
                        v is not None for v in joined.__data__.values()):
                    setattr(made[src], attr, joined)
            out.append(made[root])
        return out

    return build
