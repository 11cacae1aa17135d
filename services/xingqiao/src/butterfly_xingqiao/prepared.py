"""Selects on the hop's path whose SQL peewee builds once, not per call.

Building a select of a 40-column model costs peewee ~0.3-0.6 ms of CPU, and a hop (a
notice -> the next task published) reads twice. A :class:`Prepared` builds its query once
per database with placeholders, keeps the SQL, and per call binds the arguments and lets
the same query's cursor wrapper make the rows (model instances, joins included), so the
rows are exactly what the peewee query would have returned.
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
        return list(query._get_cursor_wrapper(cursor))  # peewee internal: see the docstring
