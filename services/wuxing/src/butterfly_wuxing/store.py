"""Write transactions: one namespace revision per write, history rows, then the cache.

:func:`run_write` is the only way domain code changes data. It opens one DB transaction,
locks and bumps the namespace's revision row first (so writers of a namespace are serialised
and revisions commit in order), runs the change, inserts its history rows, commits, and
only then advances the namespace's Redis version key - which invalidates every cache entry
of the namespace and wakes its watchers - and waits out the cache's read lease
(``WUXING_CACHE_LEASE``, cache.commit: only as long as a lease on an older version still
runs) before the caller answers. :func:`run_prepared`
(value writes) reads and checks before that lock and writes guarded rows under it.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import peewee

from butterfly_common import db, tracing

from . import cache, rowsql
from .errors import ERR_NAMESPACE_REVIEWED, WuxingError
from .models import Namespace, NamespaceSetting, now

log = logging.getLogger(__name__)
T = TypeVar("T")
P = TypeVar("P")

#: MySQL deadlock / lock wait timeout, SQLite "database is locked": safe to run again.
_RETRYABLE_MYSQL = (1205, 1213)
RETRIES = 5
_BLANK: dict[str, Any] = {"section_name": "", "section_version": "", "instance_name": "",
                          "item_id": None, "item_name": "", "item_type": "",
                          "value_old": None, "value_new": None}


@dataclass
class Write:
    """The context of one write: its namespace, revision, user and history rows."""

    namespace: str
    revision: int
    user: str
    rows: list[dict[str, Any]] = field(default_factory=list)

    def record(self, kind: str, cmd: str, **fields: Any) -> None:
        """Queue one history row (inserted in the same transaction)."""
        for key in ("value_old", "value_new"):
            if key in fields:
                fields[key] = None if fields[key] is None else json.dumps(fields[key])
        # insert_many takes its columns from the first row: every row carries them all
        self.rows.append({**_BLANK, "namespace": self.namespace, "revision": self.revision,
                          "kind": kind, "cmd": cmd, "user": self.user, "c_time": now(),
                          **fields})


def _transaction() -> Any:
    real = db.database.obj
    if isinstance(real, peewee.SqliteDatabase):
        # Take the write lock at BEGIN: a deferred transaction upgrading later deadlocks
        # with another one doing the same and fails at once instead of waiting.
        return db.database.atomic("IMMEDIATE")
    return db.database.atomic()


def _retryable(exc: Exception) -> bool:
    code = exc.args[0] if exc.args else None
    if code in _RETRYABLE_MYSQL:
        return True
    return "database is locked" in str(exc)


def _bump(namespace: str, *, direct: bool = False) -> int:
    """Lock the namespace row and take the next revision (creating the row on first use).

    One round trip: ``UPDATE ... RETURNING`` on SQLite, ``LAST_INSERT_ID(expr)`` on MySQL
    (whose value comes back with the UPDATE's result). ``direct``: the same statement
    refuses a namespace that publishes through drafts (it matches no row then), so the
    check costs no round trip of its own while the namespace's lock is held; it reads the
    setting after the namespace row is locked, the order review_set takes them in.
    """
    table = Namespace._meta.table_name
    setting = NamespaceSetting._meta.table_name
    sqlite = isinstance(db.database.obj, peewee.SqliteDatabase)
    p = "?" if sqlite else "%s"
    guard = (f" AND NOT EXISTS (SELECT 1 FROM {setting} WHERE namespace = {p} "  # noqa: S608
             "AND review)") if direct else ""
    params = (namespace, namespace) if direct else (namespace,)
    for _ in range(2):
        if sqlite:
            cursor = db.database.execute_sql(
                f"UPDATE {table} SET revision = revision + 1 WHERE namespace = ?"  # noqa: S608
                f"{guard} RETURNING revision", params)
            row = cursor.fetchone()
            if row is not None:
                return int(row[0])
        else:
            cursor = db.database.execute_sql(
                f"UPDATE {table} SET revision = LAST_INSERT_ID(revision + 1) "  # noqa: S608
                f"WHERE namespace = %s{guard}", params)
            if cursor.rowcount:
                return int(cursor.lastrowid)
        if direct:
            _refuse_direct(namespace)  # no row matched: reviewed, or no namespace row yet
        Namespace.insert(namespace=namespace, revision=0).on_conflict_ignore().execute()
    raise RuntimeError(f"namespace {namespace!r}: could not take a revision")


def reviewed(namespace: str) -> bool:
    """True when ``namespace`` publishes through drafts (namespace_setting.review)."""
    return bool(NamespaceSetting.select(NamespaceSetting.review)
                .where(NamespaceSetting.namespace == namespace).scalar())


def _refuse_direct(namespace: str) -> None:
    """Refuse a direct write to a reviewed namespace, reading the setting as committed now:
    on MySQL a locking read, because a value write reads its rows before it takes the
    namespace's lock (run_prepared), so its snapshot may predate a review_set that
    committed since - the guarded UPDATE saw the switch, a plain read would not."""
    query = (NamespaceSetting.select(NamespaceSetting.review)
             .where(NamespaceSetting.namespace == namespace))
    if not isinstance(db.database.obj, peewee.SqliteDatabase):
        query = query.for_update()
    if query.scalar():
        raise WuxingError(ERR_NAMESPACE_REVIEWED,
                          f"namespace {namespace} publishes reviewed releases: change values "
                          "with draft_set then publish (release_rollback to roll back)")


def _attempts(namespace: str, body: Callable[[], T]) -> T:
    """``body`` in one write transaction, run again on a deadlock / busy database."""
    for attempt in range(RETRIES):
        try:
            with db.database.connection_context(), _transaction():
                return body()
        except (peewee.OperationalError, peewee.InternalError) as exc:
            if attempt == RETRIES - 1 or not _retryable(exc):
                raise
            log.info("write of %s retried after %s", namespace, exc)
            time.sleep(0.01 * (attempt + 1))
    raise AssertionError("unreachable")


def run_write(namespace: str, user: str, change: Callable[[Write], T], *,
              direct: bool = False) -> tuple[T, int]:
    """Run ``change`` as one write of ``namespace``; return its result and the revision.

    A WuxingError raised by ``change`` rolls everything back (nothing is half written).
    ``direct``: the write sets values directly, refused (ERR_NAMESPACE_REVIEWED) in a
    namespace that publishes through drafts - checked under the namespace's lock, so a
    concurrent switch to review cannot slip a direct write in.
    """
    return run_prepared(namespace, user, _nothing, lambda write, _: change(write),
                        direct=direct)


def _nothing() -> None:
    return None


class Moved(Exception):
    """A row read by ``prepare`` changed before the namespace's lock was taken (a guarded
    UPDATE matched nothing): the write runs again, reading after the lock this time."""


def run_prepared(namespace: str, user: str, prepare: Callable[[], P],
                 change: Callable[[Write, P], T], *, direct: bool = False) -> tuple[T, int]:
    """As :func:`run_write`, with ``prepare`` run first in the same transaction, before the
    namespace's lock is taken: it reads (plain reads, no lock) and checks the rows the write
    will change; ``change`` gets its result and the revision, and updates those rows with
    the version ``prepare`` read in the WHERE clause, raising :class:`Moved` when one no
    longer matches.

    Why: the namespace row serialises every writer of a namespace from its lock to the
    commit, so whatever runs under it bounds the namespace's writes per second. Writers of
    different instances read and check side by side; under the lock are left the
    revision, the guarded row updates and the history insert. Every row write happens
    under the namespace's lock, so a guard that matches means nothing changed since the
    read. On :class:`Moved` the write runs again in a new transaction the old way (lock,
    then read), where no guard can miss. ``prepare`` takes no row lock, so there is no
    second lock order and no deadlock with the writes that lock the namespace first.
    """
    def body(lock_first: bool) -> tuple[T, Write]:
        if lock_first:
            write = Write(namespace, _bump(namespace, direct=direct), user)
            state = prepare()
        else:
            state = prepare()
            write = Write(namespace, _bump(namespace, direct=direct), user)
        result = change(write, state)
        rowsql.insert_history(write.rows)
        return result, write

    with tracing.span("wuxing write", {"butterfly.namespace": namespace}) as span:
        try:
            result, write = _attempts(namespace, lambda: body(False))
        except Moved as moved:
            log.info("write of %s runs again under the lock: %s changed", namespace, moved)
            result, write = _attempts(namespace, lambda: body(True))
        cache.sleep(cache.commit(namespace, write.revision))
        if span is not None:  # tracing on: the revision this write made
            span.set_attribute("butterfly.revision", write.revision)
            span.set_attribute("butterfly.history_rows", len(write.rows))
    return result, write.revision


def run_locked(namespace: str, change: Callable[[], T]) -> T:
    """Run ``change`` in one transaction holding the namespace's lock without taking a
    revision (draft edits, settings): serialised with every write of the namespace."""
    table = Namespace._meta.table_name

    def body() -> T:
        if not isinstance(db.database.obj, peewee.SqliteDatabase):  # SQLite: BEGIN IMMEDIATE
            for _ in range(2):
                cursor = db.database.execute_sql(
                    f"SELECT revision FROM {table} WHERE namespace = %s "  # noqa: S608
                    "FOR UPDATE", (namespace,))
                if cursor.fetchone() is not None:
                    break
                Namespace.insert(namespace=namespace, revision=0).on_conflict_ignore().execute()
        return change()

    return _attempts(namespace, body)


def run_transaction(what: str, body: Callable[[], T]) -> T:
    """``body`` in one write transaction that takes no namespace lock (client reports),
    run again on a deadlock / busy database like every write."""
    return _attempts(what, body)
