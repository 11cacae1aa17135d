"""Ruqi's two tables: job definitions and their run history.

Every scheduling input is a plain column (trigger, rule, timezone, start time) instead of the
original's pickled APScheduler job, so any replica - or any language - can rebuild the same
trigger and compute the same fire times. ``version`` changes on every edit: engines reload a
job only when its version moved, and cursor writes are fenced by it so a slow replica cannot
undo an edit.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import peewee

from butterfly_common import db


def _now() -> dt.datetime:
    return dt.datetime.now().replace(microsecond=0)


class BaseModel(peewee.Model):
    class Meta:
        database = db.database
        legacy_table_names = False


class Job(BaseModel):
    """One scheduled job; ``next_run_time`` NULL means paused (as in the original)."""

    id = peewee.CharField(max_length=64, primary_key=True)
    name = peewee.CharField(max_length=64, index=True)
    trigger = peewee.CharField(max_length=16)
    rule = peewee.CharField(max_length=128)
    cmd = peewee.TextField()
    timezone = peewee.CharField(max_length=64)
    #: Epoch seconds the interval count starts from (set on add/modify/resume).
    start_time = peewee.DoubleField()
    paused = peewee.BooleanField(default=False)
    #: Epoch seconds of the next fire not yet recorded as run; the restart cursor.
    next_run_time = peewee.DoubleField(null=True, index=True)
    misfire_grace_time = peewee.IntegerField()
    coalesce = peewee.BooleanField()
    overlap = peewee.CharField(max_length=16)
    timeout = peewee.DoubleField()
    wait_result = peewee.BooleanField(default=False)
    version = peewee.IntegerField(default=1)
    #: Why, by whom and when (epoch s) the job was paused; NULL when it runs.
    pause_note = peewee.TextField(null=True)
    paused_by = peewee.CharField(max_length=64, null=True)
    paused_at = peewee.DoubleField(null=True)
    #: Pause the job after this many consecutive failed runs (0: never).
    pause_on_failure = peewee.IntegerField(default=0)
    #: Bounds (epoch s): no fire before ``start_at`` nor after ``end_at`` (NULL: none).
    start_at = peewee.DoubleField(null=True)
    end_at = peewee.DoubleField(null=True)
    #: Each fire is delayed by a deterministic amount in [0, jitter] seconds (schedule.py).
    jitter = peewee.DoubleField(default=0.0)
    #: After the fleet was down or the job paused, run times up to this many seconds ago
    #: still run (0: the misfire grace; the window is the larger of the two).
    catchup_window = peewee.IntegerField(default=0)
    c_time = peewee.DateTimeField(default=_now, index=True)
    u_time = peewee.DateTimeField(default=_now)

    class Meta:
        table_name = "ruqi_job"


class History(BaseModel):
    """One row per (job, scheduled time) the cluster handled, whatever the outcome.

    ``fire_key`` (the fire's claim key) is unique: however replicas interleave - a peer
    recording ``lost`` for a stalled owner that then reports, a batch retried after its
    commit's reply was lost - the table holds one row per fire (history.py).
    """

    id = peewee.BigAutoField()
    job_id = peewee.CharField(max_length=64, index=True)
    job_name = peewee.CharField(max_length=64, index=True)
    cmd = peewee.TextField()
    #: ok | failed | missed | skipped | lost | buffered (until the buffered fire runs) |
    #: canceled (cancel_other: a newer fire stopped it; at most 8 characters);
    #: a backfill's rows have ``fire_key`` ``ruqi:fire:<job>:b<ms>`` and output ``[backfill]``
    status = peewee.CharField(max_length=8)
    cmd_is_success = peewee.BooleanField(index=True)
    cmd_output = peewee.TextField()
    cmd_cost = peewee.DoubleField()
    scheduled_time = peewee.DoubleField()
    start_time = peewee.DoubleField(null=True)
    end_time = peewee.DoubleField(null=True)
    scheduler_name = peewee.CharField(max_length=128)
    reqid = peewee.CharField(max_length=16)
    manual = peewee.BooleanField(default=False)
    #: NULL only on rows written before it existed (NULLs never collide in a unique index).
    fire_key = peewee.CharField(max_length=100, null=True, unique=True)
    c_time = peewee.DateTimeField(default=_now, index=True)

    class Meta:
        table_name = "ruqi_job_history"
        indexes = ((("job_id", "id"), False),)


MODELS: list[type[peewee.Model]] = [Job, History]


#: Job columns added after the first release, in the order they came.
JOB_ADDED = ("pause_note", "paused_by", "paused_at", "pause_on_failure", "start_at", "end_at",
             "jitter", "catchup_window")


def migrate() -> None:
    """Bring tables created by an older release up to date: ``fire_key`` (history), the
    pause note, pause_on_failure, bounds, jitter and the catch-up window (jobs).

    Safe from many processes at once: a loser of the race finds the column there."""
    from playhouse.migrate import SchemaMigrator
    from playhouse.migrate import migrate as run

    def columns(table: str) -> set[str]:
        return {c.name for c in db.database.get_columns(table)}

    def add(model: type[BaseModel], name: str, unique: bool | None = None) -> None:
        table = model._meta.table_name
        if name in columns(table):
            return
        migrator = SchemaMigrator.from_database(db.database.obj)
        ops = [migrator.add_column(table, name, model._meta.fields[name])]
        if unique is not None:
            ops.append(migrator.add_index(table, (name,), unique))
        try:
            run(*ops)
        except peewee.DatabaseError:
            if name not in columns(table):
                raise

    with db.database.connection_context():
        add(History, "fire_key", unique=True)
        for name in JOB_ADDED:
            add(Job, name)
        _widen_overlap()


def _widen_overlap() -> None:
    """``overlap`` was VARCHAR(8); ``buffer_one`` needs more (MySQL/MariaDB enforce it,
    SQLite does not)."""
    if not isinstance(db.database.obj, peewee.MySQLDatabase):
        return
    table = Job._meta.table_name
    row = db.database.execute_sql(
        "SELECT CHARACTER_MAXIMUM_LENGTH FROM information_schema.COLUMNS WHERE "
        "TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s AND COLUMN_NAME = 'overlap'",
        (table,)).fetchone()
    if row and row[0] is not None and int(row[0]) < 16:
        db.database.execute_sql(f"ALTER TABLE {table} MODIFY overlap VARCHAR(16) NOT NULL")


def format_ts(ts: float | None) -> str | None:
    """Epoch seconds as local ``YYYY-MM-DD HH:MM:SS.mmm`` (the original showed local time)."""
    if ts is None:
        return None
    return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def format_bound(ts: float | None, zone: str) -> str | None:
    """A start_at / end_at in the job's own zone with its offset (``2026-06-01
    12:00:00+0000``): exactly the instant, and what add_job/modify_job accept back."""
    if ts is None:
        return None
    try:
        tz: dt.tzinfo = ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        tz = dt.UTC
    return dt.datetime.fromtimestamp(ts, tz).strftime("%Y-%m-%d %H:%M:%S%z")


def job_to_dict(job: Job, next_run_time: float | None) -> dict[str, Any]:
    """The API view of a job, with the original's field names first; ``next_run_time``
    includes the job's jitter."""
    return {
        "job_id": job.id,
        "job_name": job.name,
        "job_trigger": job.trigger,
        "cmd": job.cmd,
        "rule": job.rule,
        "next_run_time": format_ts(next_run_time),
        "nexttime": format_ts(next_run_time),
        "paused": job.paused,
        "timezone": job.timezone,
        "misfire_grace_time": job.misfire_grace_time,
        "coalesce": job.coalesce,
        "overlap": job.overlap,
        "timeout": job.timeout,
        "wait_result": job.wait_result,
        "version": job.version,
        "pause_note": job.pause_note,
        "paused_by": job.paused_by,
        "paused_at": format_ts(job.paused_at),
        "pause_on_failure": job.pause_on_failure,
        "start_at": format_bound(job.start_at, job.timezone),
        "end_at": format_bound(job.end_at, job.timezone),
        "jitter": job.jitter,
        "catchup_window": job.catchup_window,
        "c_time": job.c_time,
        "u_time": job.u_time,
    }


def history_to_dict(row: History) -> dict[str, Any]:
    """The API view of a history row (the original's columns plus timing and reqid)."""
    return {
        "id": row.id,
        "job_id": row.job_id,
        "job_name": row.job_name,
        "cmd": row.cmd,
        "status": row.status,
        "cmd_is_success": row.cmd_is_success,
        "cmd_output": row.cmd_output,
        "cmd_cost": row.cmd_cost,
        "scheduled_time": format_ts(row.scheduled_time),
        "start_time": format_ts(row.start_time),
        "end_time": format_ts(row.end_time),
        "scheduler_name": row.scheduler_name,
        "reqid": row.reqid,
        "manual": row.manual,
        "c_time": row.c_time,
    }
