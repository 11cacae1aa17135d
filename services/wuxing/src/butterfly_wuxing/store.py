"""Write transactions: one namespace revision per write, history rows, then the cache.

:func:`run_write` is the only way domain code changes data. It opens one DB transaction,
locks and bumps the namespace's revision row first (so writers of a namespace are serialised
and revisions commit in order), runs the change, inserts its history rows, commits, and
only then advances the namespace's Redis version key - which invalidates every cache entry
of the namespace and wakes its watchers - and waits out the cache's read lease
(``WUXING_CACHE_LEASE``, cache.commit: only as long as a lease on an older version still
runs) before the caller answers. :func:`run_prepared` (value writes) reads and checks
before that lock and writes guarded rows under it, and commits the writes of a namespace
that queued meanwhile together (one transaction, a revision each, a write failing alone).
"""

from __future__ import annotations

import json
import logging
import threading
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


def _bump(namespace: str, *, direct: bool = False, count: int = 1) -> int:
    """Lock the namespace row and take the next ``count`` revisions (creating the row on
    first use); return the last of them.

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
                f"UPDATE {table} SET revision = revision + ? WHERE namespace = ?"  # noqa: S608
                f"{guard} RETURNING revision", (count, *params))
            row = cursor.fetchone()
            if row is not None:
                return int(row[0])
        else:
            cursor = db.database.execute_sql(
                f"UPDATE {table} SET revision = LAST_INSERT_ID(revision + %s) "  # noqa: S608
                f"WHERE namespace = %s{guard}", (count, *params))
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
    return _run(namespace, user, _nothing, lambda write, _: change(write), direct, 1)


def _nothing() -> None:
    return None


class Moved(Exception):
    """A row read by ``prepare`` changed before the namespace's lock was taken (a guarded
    UPDATE matched nothing): the write runs again, reading after the lock this time."""


def run_prepared(namespace: str, user: str, prepare: Callable[[], P],
                 change: Callable[[Write, P], T], *, direct: bool = False) -> tuple[T, int]:
    """As :func:`run_write`, with ``prepare`` run first, before the namespace's lock is
    taken: it reads (plain reads, no lock) and checks the rows the write will change;
    ``change`` gets its result and the revision, and updates those rows with the version
    ``prepare`` read in the WHERE clause, raising :class:`Moved` when one no longer
    matches.

    Why: the namespace row serialises every writer of a namespace from its lock to the
    commit, so whatever runs under it bounds the namespace's writes per second. Writers of
    different instances read and check side by side; under the lock are left the
    revision, the guarded row updates and the history insert. Every row write happens
    under the namespace's lock, so a guard that matches means nothing changed since the
    read. On :class:`Moved` the write runs again the old way (lock, then read), where no
    guard can miss. ``prepare`` takes no row lock, so there is no second lock order and no
    deadlock with the writes that lock the namespace first.

    Writers of one namespace in one process commit in groups (``WUXING_WRITE_GROUP_MAX``,
    :func:`_grouped`): each one prepares in its own thread, then the writes that queued up
    while the previous group held the lock are committed together in one transaction by
    one of them - one lock, one revision UPDATE, one history INSERT and one commit for the
    group, each write still with its own revision, CAS and answer.
    """
    return _run(namespace, user, prepare, change, direct, _group_max())


def _run(namespace: str, user: str, prepare: Callable[[], P],
         change: Callable[[Write, P], T], direct: bool, limit: int) -> tuple[T, int]:
    """A write alone (``limit`` 1) or in its namespace's group of up to ``limit``."""
    with tracing.span("wuxing write", {"butterfly.namespace": namespace}) as span:
        # a write inside a transaction (one write calling another) never queues: the
        # group it would wait for may be its own
        if limit > 1 and not db.database.in_transaction():
            job: _Job = _Job(user, prepare, change)
            # one connection for the read and, should this writer lead, the transaction
            # (a checkout costs a ping round trip)
            with db.database.connection_context():
                job.prepared = prepare()
                _grouped(namespace, direct, job, limit)
            result, revision, rows = job.outcome()
        else:
            result, write = _alone(namespace, user, prepare, change, direct)
            cache.sleep(cache.commit(namespace, write.revision))
            revision, rows = write.revision, len(write.rows)
        if span is not None:  # tracing on: the revision this write made
            span.set_attribute("butterfly.revision", revision)
            span.set_attribute("butterfly.history_rows", rows)
    return result, revision


def _group_max() -> int:
    from butterfly_common import runtime

    from .config import WuxingConfig
    return runtime.get_config(WuxingConfig).write_group_max


def _alone(namespace: str, user: str, prepare: Callable[[], P],
           change: Callable[[Write, P], T], direct: bool) -> tuple[T, Write]:
    """One write in its own transaction (``WUXING_WRITE_GROUP_MAX=1``)."""
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

    try:
        return _attempts(namespace, lambda: body(False))
    except Moved as moved:
        log.info("write of %s runs again under the lock: %s changed", namespace, moved)
        return _attempts(namespace, lambda: body(True))


class _Job:
    """One writer's write waiting in (or leading) its namespace's group."""

    def __init__(self, user: str, prepare: Callable[[], Any],
                 change: Callable[[Write, Any], Any]) -> None:
        self.user = user
        self.prepare = prepare
        self.change = change
        self.prepared: Any = None  # what prepare() read in the writer's own thread
        self.fresh = False  # a guard missed: prepare again under the lock from now on
        self.done = threading.Event()
        self.lead = False  # set with done: this writer commits the next group
        self.result: Any = None
        self.error: BaseException | None = None
        self.write: Write | None = None
        self.answer_at = 0.0  # monotonic time the write may answer (the cache's leases)

    def outcome(self) -> tuple[Any, int, int]:
        """``(result, revision, history rows)``, after the cache's leases ran out; raises
        the write's own error."""
        if self.error is not None:
            raise self.error
        assert self.write is not None
        cache.sleep(self.answer_at - time.monotonic())
        return self.result, self.write.revision, len(self.write.rows)


class _Group:
    """The writes of one namespace (and kind: direct or not) queued in this process."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.queue: list[_Job] = []
        self.busy = False  # a writer is committing a group: the others queue


_groups: dict[tuple[str, bool], _Group] = {}
_groups_lock = threading.Lock()


def _grouped(namespace: str, direct: bool, job: _Job, limit: int) -> None:
    """Queue ``job``; the first writer to find no group committing commits the queue (up
    to ``limit``) in one transaction, then hands the lead to the first writer still
    queued, publishes its group's last revision (cache.commit: one version advance, the
    local watch wake-up) and hands every writer of its group its own outcome."""
    key = (namespace, direct)
    group = _groups.get(key)
    if group is None:
        with _groups_lock:
            group = _groups.setdefault(key, _Group())
    with group.lock:
        group.queue.append(job)
        lead = not group.busy
        group.busy = True
    if not lead:
        job.done.wait()
        if not job.lead:
            return

    def more(taken: int) -> list[_Job]:
        with group.lock:
            extra, group.queue = group.queue[:limit - taken], group.queue[limit - taken:]
        return extra

    batch = more(0)
    interrupted: BaseException | None = None
    try:
        _commit_group(namespace, direct, batch, more)
    except Exception as exc:  # a failure of the transaction: every write of it failed
        for one in batch:
            one.error, one.write = exc, None
    except BaseException as exc:  # the leader's thread is stopping: it raises, once out
        interrupted = exc
        for one in batch:
            one.error, one.write = RuntimeError(f"interrupted: {exc!r}"), None
    finally:
        with group.lock:
            if group.queue:  # the next group's commit starts while this one publishes
                group.queue[0].lead = True
                group.queue[0].done.set()
            else:
                group.busy = False
    if interrupted is not None:
        for one in batch:
            one.done.set()
        raise interrupted
    written = [one.write for one in batch if one.error is None and one.write is not None]
    answer_at = 0.0
    if written:
        wait = cache.commit(namespace, max(w.revision for w in written))
        answer_at = time.monotonic() + wait
    for one in batch:
        one.answer_at = answer_at
        if one is not job:
            one.done.set()


def _commit_group(namespace: str, direct: bool, batch: list[_Job],
                  more: Callable[[int], list[_Job]]) -> None:
    """The group's writes in one transaction, in queue order: one UPDATE locks the
    namespace and takes a revision for each write of ``batch``; the writes that queued
    while it waited for the lock join the group then (``more``, appended to ``batch``).
    Each write takes the next revision; then one UPDATE sets the revision actually used
    (when the group grew or a write failed), one history INSERT and the commit.

    A write that fails (a lost CAS, a refusal, a guard that missed) must not fail the
    others: the group first runs without savepoints (no round trip per write); at the
    first failure it rolls back and runs again with a SAVEPOINT before each write, where a
    failure rolls back to it and fails that write alone, taking no revision. A guard that
    missed re-reads under the lock. A deadlock runs the whole group again."""
    sqlite = isinstance(db.database.obj, peewee.SqliteDatabase)
    savepoints = False

    def body() -> None:
        for one in batch:
            one.result, one.error, one.write = None, None, None
        last = _bump(namespace, direct=direct, count=len(batch))
        first = revision = last - len(batch) + 1
        batch.extend(more(len(batch)))  # queued while this waited for the lock
        rows: list[dict[str, Any]] = []
        for one in batch:
            write = Write(namespace, revision, one.user)
            if savepoints:
                db.database.execute_sql("SAVEPOINT wx_write")
            try:
                try:
                    one.result = one.change(write, one.prepare() if one.fresh
                                            else one.prepared)
                except Moved as moved:
                    if one.fresh:  # cannot happen: the rows were read under the lock
                        raise RuntimeError(f"{moved} under the lock") from moved
                    log.info("write of %s runs again under the lock: %s changed",
                             namespace, moved)
                    one.fresh = True
                    if not savepoints:
                        raise _Again from moved
                    db.database.execute_sql("ROLLBACK TO SAVEPOINT wx_write")
                    write = Write(namespace, revision, one.user)
                    one.result = one.change(write, one.prepare())
            except _Again:
                raise
            except Exception as exc:
                if isinstance(exc, (peewee.OperationalError, peewee.InternalError)) \
                        and _retryable(exc):
                    raise  # a deadlock: the whole group again (_attempts)
                if not savepoints:
                    if len(batch) > 1:
                        raise _Again from exc
                    raise  # a write alone fails with its transaction
                db.database.execute_sql("ROLLBACK TO SAVEPOINT wx_write")
                one.error = exc
                continue
            one.write = write
            rows.extend(write.rows)
            revision += 1
        if revision == first:
            raise _NothingWritten  # every write failed: no revision taken
        if revision - 1 != last:  # the group grew, or some failed: the revision used
            table = Namespace._meta.table_name
            p = "?" if sqlite else "%s"
            db.database.execute_sql(
                f"UPDATE {table} SET revision = {p} WHERE namespace = {p}",  # noqa: S608
                (revision - 1, namespace))
        rowsql.insert_history(rows)

    while True:
        try:
            _attempts(namespace, body)
        except _Again:
            # rolled back: a write of a group failed (savepoints from now on) or the
            # guard of a write alone missed (it reads under the lock this time)
            savepoints = len(batch) > 1
            continue
        except _NothingWritten:
            pass
        return


class _Again(Exception):
    """A write of a group failed without savepoints, or a write alone's guard missed: the
    transaction rolls back and runs again."""


class _NothingWritten(Exception):
    """Every write of a group failed: its transaction rolls back."""


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
