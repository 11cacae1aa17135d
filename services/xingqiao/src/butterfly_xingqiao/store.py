"""Compare-and-set moves of task and flow rows: the only code that writes a status.

Every move is one statement, ``UPDATE ... SET status=<target>, ... WHERE id=? AND
status=<source> [AND task_reqid=<msg id>]``, so it is its own transaction on SQLite and
MySQL alike, and its rowcount says whether this caller made the move. Whoever gets 0
lost a race (a duplicated notice, a second replica, a sweep) and does nothing more.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any, TypeVar

import peewee

from butterfly_common import db

from .lifecycle import FLOW_MOVES, TASK_MOVES, target
from .models import Job, Task, now_dt

T = TypeVar("T")
BUSY_TRIES = 12


def is_busy(exc: Exception) -> bool:
    """SQLite's "database is locked": another writer held the lock past busy_timeout."""
    return isinstance(exc, peewee.OperationalError) and "locked" in str(exc)


def busy_retry(step: Callable[[], T]) -> T:
    """Run ``step`` (one statement or one whole transaction) again while SQLite says the
    database is locked: many writer threads in several processes share one file, and
    under load one may wait past busy_timeout. Jittered, about 10 s in all."""
    for attempt in range(BUSY_TRIES):
        try:
            return step()
        except peewee.OperationalError as exc:
            if not is_busy(exc) or attempt == BUSY_TRIES - 1:
                raise
            time.sleep(min(2.0, 0.02 * 2 ** attempt) * random.uniform(0.5, 1.0))  # noqa: S311
    raise AssertionError("unreachable")


def tx() -> Any:
    """A write transaction; on SQLite taken IMMEDIATE, so two writers queue on the lock
    (busy_timeout) instead of one failing with 'database is locked' on upgrade."""
    database = db.database.obj
    if isinstance(database, peewee.SqliteDatabase):
        return database.atomic("IMMEDIATE")
    return db.database.atomic()


def bulk_insert(model: type[peewee.Model], rows: list[dict[str, Any]]) -> None:
    """Insert ``rows`` (field name -> value; the model's defaults fill the rest) with one
    ``executemany`` of one statement: peewee builds no SQL per value, so a thousand rows
    cost a few milliseconds, not a second. Call it inside a transaction (:func:`tx`)."""
    if not rows:
        return
    database = db.database.obj
    quote = database.quote
    fields = [f for f in model._meta.sorted_fields if not isinstance(f, peewee.AutoField)]
    columns = ", ".join(f"{quote[0]}{f.column_name}{quote[1]}" for f in fields)
    # identifiers from the model's own definition; every value is a bound parameter
    sql = (f"INSERT INTO {quote[0]}{model._meta.table_name}{quote[1]} ({columns}) "  # noqa: S608
           f"VALUES ({', '.join([database.param] * len(fields))})")
    values = []
    for row in rows:
        data = model(**row).__data__
        values.append(tuple(f.db_value(data.get(f.name)) for f in fields))
    database.cursor().executemany(sql, values)


def locked(query: Any) -> Any:
    """``query`` as a locking read (``FOR UPDATE``) inside a transaction; on SQLite as is,
    its IMMEDIATE transaction (:func:`tx`) already holds the one write lock."""
    if isinstance(db.database.obj, peewee.SqliteDatabase):
        return query
    return query.for_update()


#: SQL of a task move by its shape (database, fields, fenced by message, only while the
#: flow runs): peewee spends ~0.3 ms of CPU building an UPDATE, three of them a hop.
_MOVE_SQL: dict[tuple[Any, ...], tuple[str, list[peewee.Field]]] = {}


def _move_sql(names: tuple[str, ...], fenced: bool, job_started: bool
              ) -> tuple[str, list[peewee.Field]]:
    """``UPDATE task SET status, u_time, u_ts, <names> WHERE id AND status [AND reqid]
    [AND job_id IN (the flow, if it runs)]`` and the fields whose values it binds."""
    database = db.database.obj
    key = (id(database), names, fenced, job_started)
    found = _MOVE_SQL.get(key)
    if found is not None:
        return found
    q0, q1 = database.quote
    param = database.param

    def col(field: peewee.Field) -> str:
        return f"{q0}{field.column_name}{q1}"

    sets: list[Any] = [Task.task_status, Task.u_time, Task.u_ts, *(getattr(Task, n) for n in names)]
    where: list[Any] = [Task.task_id, Task.task_status, *([Task.task_reqid] if fenced else [])]
    # identifiers from the models' own definitions; every value is a bound parameter
    sql = (f"UPDATE {q0}{Task._meta.table_name}{q1} SET "  # noqa: S608
           + ", ".join(f"{col(f)} = {param}" for f in sets)
           + " WHERE " + " AND ".join(f"{col(f)} = {param}" for f in where))
    binds = sets + where
    if job_started:
        sql += (f" AND {col(Task.job_id)} IN (SELECT {col(Job.job_id)} FROM "  # noqa: S608
                f"{q0}{Job._meta.table_name}{q1} WHERE {col(Job.job_id)} = {param} "
                f"AND {col(Job.job_status)} = {param})")
        binds += [Job.job_id, Job.job_status]
    _MOVE_SQL[key] = (sql, binds)
    return sql, binds


def move_task(task: Task, event: str, *, msg_id: str | None = None,
              job_started: bool = False, **fields: Any) -> bool:
    """Apply ``event`` to ``task`` if its row is still in the state ``task`` was read in
    (and, with ``msg_id``, still on that attempt; with ``job_started``, only while its flow
    runs). On success the in-memory ``task`` is updated too. One statement, its SQL built
    once per shape (:func:`_move_sql`)."""
    source = task.task_status
    new = target(TASK_MOVES, event, source)
    now = time.time()
    names = tuple(sorted(fields))
    sql, binds = _move_sql(names, msg_id is not None, job_started)
    values: list[Any] = [new, now_dt(), now, *(fields[n] for n in names), task.task_id,
                         source]
    if msg_id is not None:
        values.append(msg_id)
    if job_started:
        values += [task.job_id, "started"]
    params = [field.db_value(value) for field, value in zip(binds, values, strict=True)]
    database = db.database.obj
    if busy_retry(lambda: database.execute_sql(sql, params).rowcount) != 1:
        return False
    task.task_status = new
    task.u_ts = now
    for name, value in fields.items():
        setattr(task, name, value)
    return True


def end_task(task: Task, event: str, **fields: Any) -> bool:
    """Apply ``event`` (cancel / time_out of a stopped flow) whatever active state the task
    is in by now: re-read and try again when a racing step (a dispatch marking it sent)
    moved it between our read and our write. False once it ended by itself."""
    for _ in range(10):
        if task.task_status not in TASK_MOVES[event]:
            return False
        if move_task(task, event, **fields):
            return True
        fresh = Task.get_or_none(Task.task_id == task.task_id)
        if fresh is None:
            return False
        task = fresh
    return False


def move_job(job: Job, event: str, **fields: Any) -> bool:
    """Apply ``event`` to ``job`` if its row is still in the state (and run: ``exe_id``)
    ``job`` was read in, so a verdict computed before a retry cannot end the new run."""
    source = job.job_status
    new = target(FLOW_MOVES, event, source)
    values = {Job.job_status: new}
    values.update({getattr(Job, name): value for name, value in fields.items()})
    moved = busy_retry(Job.update(values).where((Job.job_id == job.job_id)
                                                & (Job.job_status == source)
                                                & (Job.exe_id == job.exe_id)).execute)
    if moved != 1:
        return False
    job.job_status = new
    for name, value in fields.items():
        setattr(job, name, value)
    return True
