"""Run history: a batching writer for the engine and automatic retention.

Writing one row per fire from the executing thread would cost one DB commit per fire; at
1,000 fires a second that is the bottleneck. The writer batches rows (and the restart cursor
updates that go with them) into one transaction every ``interval`` (a ``Periodic`` loop,
woken early when a batch is full), and only THEN marks the fires done in Redis. So a fire
is "done" only once its row is durable: an engine killed in between leaves its fires
"running" under a dead owner, and a peer records them as ``lost`` instead of the history
silently missing them. Rows are keyed by the fire (``fire_key``, unique), so no
interleaving of owner, peers and retries stores a fire twice.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import peewee
import pymysql.cursors
from pymysql.converters import escape_float

from butterfly_common import db
from butterfly_common.periodic import Periodic

from .claims import Claims
from .models import History, Job

log = logging.getLogger("butterfly.ruqi.history")

MAX_BUFFER = 100_000
CURSOR_EVERY = 5.0


@dataclass
class Record:
    """A history row plus what to do once it is stored."""

    #: None for a bare job deletion (a date job whose only run time was missed).
    row: dict[str, Any] | None
    #: (fire key, expected value, done value, ttl) to compare-and-set after the commit.
    finish: tuple[str, str, str, float] | None = None
    #: (job id, job version, next fire) - advance the job's restart cursor.
    cursor: tuple[str, int, float] | None = None
    #: (job id, job version) - the job has no fire left (date jobs): delete its row.
    delete: tuple[str, int] | None = None


class HistoryWriter:
    """Collects records from executor threads; one loop (``ruqi-history``) commits them in
    batches every ``interval``, or at once when a batch is full."""

    def __init__(self, claims: Claims, interval: float = 0.25, batch: int = 500) -> None:
        self.claims = claims
        self.interval = interval
        self.batch = batch
        self._buf: deque[Record] = deque()
        self._lock = threading.Lock()
        self._cursor_at: dict[str, float] = {}
        #: After a failed store the records stay buffered; the next try waits a bit longer.
        self._loop = Periodic("ruqi-history", interval, self.drain,
                              retry=min(1.0, interval * 5), logger=log)

    def put(self, record: Record) -> None:
        with self._lock:
            if len(self._buf) >= MAX_BUFFER:
                dropped = self._buf.popleft()
                log.error("history buffer full, dropped %r", dropped.row)
            self._buf.append(record)
            full = len(self._buf) >= self.batch
        if full:
            self._loop.wake()

    def pending(self) -> int:
        return len(self._buf)

    def start(self) -> None:
        self._loop.start()

    def stop(self, timeout: float = 10.0) -> None:
        """End the loop, then store what is buffered until the DB refuses or ``timeout``
        seconds passed (what is left then is lost with the process: peers record those
        fires ``lost``)."""
        deadline = time.monotonic() + timeout
        self._loop.stop(timeout)
        while self._buf and time.monotonic() < deadline:
            if not self.flush_once():
                log.error("engine stopping: %d history rows not stored", len(self._buf))
                return

    def drain(self) -> None:
        """Store every buffered batch (the loop's work). Raises when the DB refuses (the
        records stay buffered for the next run) or, after storing all, when marking the
        fires done in Redis failed - so the loop logs such an outage once."""
        unmarked: Exception | None = None
        while self._buf:
            try:
                self._store_batch()
            except _Unmarked as exc:
                unmarked = unmarked or exc.cause
        if unmarked is not None:
            raise unmarked

    def _cursors(self, records: list[Record]) -> dict[tuple[str, int], float]:
        """The cursor moves to write now: at most one per job every ``CURSOR_EVERY``.

        The cursor only matters after every engine was down (catch-up) and for display
        (which computes the next fire itself when the cursor lags). A lag never re-runs a
        fire: restarting engines only claim fires within the misfire grace, and those still
        have their done marker in Redis (kept for grace + 30 s).
        """
        now = time.monotonic()
        out: dict[tuple[str, int], float] = {}
        for r in records:
            if not r.cursor:
                continue
            job_id, version, nxt = r.cursor
            if now - self._cursor_at.get(job_id, -CURSOR_EVERY) < CURSOR_EVERY:
                continue
            key = (job_id, version)
            out[key] = max(out.get(key, 0.0), nxt)
        for job_id, _ in out:
            self._cursor_at[job_id] = now
        if len(self._cursor_at) > 100_000:
            self._cursor_at.clear()
        return out

    def flush_once(self) -> bool:
        """Store up to one batch; False when the DB refused (records are kept)."""
        try:
            self._store_batch()
        except _Unmarked:
            return True  # stored; the fires stay "running" (see _store_batch)
        except Exception:
            log.exception("storing %d history rows failed", min(self.batch, len(self._buf)))
            return False
        return True

    def _store_batch(self) -> None:
        """Store up to one batch, then mark its fires done. A DB error puts the records
        back and propagates; a Redis error after the commit is :class:`_Unmarked`."""
        with self._lock:
            records = [self._buf.popleft() for _ in range(min(self.batch, len(self._buf)))]
        if not records:
            return
        try:
            deleted = _store(records, self._cursors(records))
        except Exception:
            with self._lock:
                self._buf.extendleft(reversed(records))
            raise
        try:
            self.claims.finish_many(r.finish for r in records if r.finish)
            if deleted:
                self.claims.bump()
        except Exception as exc:
            # Rows are stored; the fire keys stay "running", and a peer that later finds
            # this engine silent records "lost", which the stored outcome keeps out
            # (one row per fire: insert_sql).
            raise _Unmarked(exc) from exc


class _Unmarked(Exception):
    """A batch was stored, but marking its fires done in Redis failed with ``cause``."""

    def __init__(self, cause: Exception) -> None:
        super().__init__(f"marking fires done failed: {cause}")
        self.cause = cause


HISTORY_COLUMNS = ("job_id", "job_name", "cmd", "status", "cmd_is_success", "cmd_output",
                   "cmd_cost", "scheduled_time", "start_time", "end_time", "scheduler_name",
                   "reqid", "manual", "fire_key")
#: Columns a real outcome overwrites on a ``lost`` row of the same fire.
_OUTCOME = tuple(c for c in HISTORY_COLUMNS if c not in ("job_id", "fire_key"))


def insert_sql(table: str, mysql: bool, param: str) -> str:
    """One row per fire, whatever the interleaving: INSERT keyed on ``fire_key``.

    A second row of the same fire is never added. When it carries the real outcome and the
    stored row says ``lost`` (a peer gave up on an owner that was only stalled) or
    ``buffered`` (the fire waited behind an overlapping run), the outcome replaces it;
    anything else (a retried batch, a late ``lost``) changes nothing.
    """
    head, tail = _insert_parts(table, mysql)
    return f"{head}({', '.join([param] * (len(HISTORY_COLUMNS) + 1))}){tail}"


def _insert_parts(table: str, mysql: bool) -> tuple[str, str]:
    """:func:`insert_sql` around its row: ``INSERT ... VALUES `` and the upsert clause."""
    head = f"INSERT INTO {table} ({', '.join((*HISTORY_COLUMNS, 'c_time'))}) VALUES "  # noqa: S608
    if mysql:
        # MySQL evaluates the assignments left to right: ``status`` goes last, so every
        # test still sees the stored value.
        cond = ("status IN ('lost', 'buffered') "
                "AND VALUES(status) NOT IN ('lost', 'buffered')")
        sets = ", ".join(f"{c} = IF({cond}, VALUES({c}), {c})"
                         for c in (*(c for c in _OUTCOME if c != "status"), "status"))
        return head, f" ON DUPLICATE KEY UPDATE {sets}"
    sets = ", ".join(f"{c} = excluded.{c}" for c in _OUTCOME)
    return head, (f" ON CONFLICT (fire_key) DO UPDATE SET {sets} "
                  f"WHERE {table}.status IN ('lost', 'buffered') "
                  f"AND excluded.status NOT IN ('lost', 'buffered')")


#: Longest multi-row INSERT sent at once (bytes): pymysql's own executemany limit, far
#: under MariaDB's default max_allowed_packet (16 MiB).
MAX_STATEMENT = 1_024_000
#: Columns whose values repeat from fire to fire (escaped once per batch).
_REPEATED = frozenset(("job_id", "job_name", "cmd", "status", "scheduler_name"))


def _pymysql_insert(cursor: Any, table: str, rows: list[dict[str, Any]], c_time: str) -> None:
    """The rows as multi-row INSERTs whose values are written in as literals, escaped the
    way pymysql's executemany escapes them (``Connection.escape``: its string escaping,
    which follows the server's NO_BACKSLASH_ESCAPES mode; ``escape_float``).

    executemany went through pymysql's generic per-value dispatch for 15 values a row:
    a tenth of a replica's CPU at 1,000 fires a second. Here a value's type picks its
    literal directly, and the strings that repeat (job, command, engine) are escaped once
    per batch."""
    conn = cursor.connection
    quote = getattr(conn, "_escape_string", None) or conn.escape_string
    escape, encoding = conn.escape, conn.encoding
    seen: dict[str, str] = {}

    def literal(value: Any, repeated: bool) -> str:
        kind = type(value)
        if kind is str:
            if repeated:
                out = seen.get(value)
                if out is None:
                    out = seen[value] = f"'{quote(value)}'"
                return out
            return f"'{quote(value)}'"
        if kind is bool:
            return "1" if value else "0"
        if value is None:
            return "NULL"
        if kind is float:
            return escape_float(value)
        return str(escape(value))

    cols = [(c, c in _REPEATED) for c in HISTORY_COLUMNS]
    stamp = f"'{quote(c_time)}'"
    head, tail = _insert_parts(table, mysql=True)
    prefix, postfix = head.encode(encoding), tail.encode(encoding)
    sql = bytearray(prefix)
    for row in rows:
        values = ",".join([literal(row[c], rep) for c, rep in cols])
        item = f"({values},{stamp})".encode(encoding)
        if len(sql) > len(prefix):
            if len(sql) + len(item) + len(postfix) + 1 > MAX_STATEMENT:
                cursor.execute(bytes(sql + postfix))
                sql = bytearray(prefix)
            else:
                sql += b","
        sql += item
    cursor.execute(bytes(sql + postfix))


#: Jobs whose cursor one UPDATE statement moves (7 parameters each: within SQLite's
#: oldest limit of 999).
CURSOR_CHUNK = 100


def cursor_sql(table: str, param: str,
               moves: list[tuple[tuple[str, int], float]]) -> tuple[str, list[Any]]:
    """One UPDATE moving the restart cursor of several jobs: ``((job id, version), next
    fire)`` each, fenced by the version (an edit wins) and only ever forward.

    One statement, not one per job: an executemany of UPDATEs is a round trip each (only
    INSERTs are folded into one), and 1,000 jobs at 1 s move 200 cursors a second."""
    one = f"id = {param} AND version = {param} AND next_run_time < {param}"
    cases = " ".join([f"WHEN {one} THEN {param}"] * len(moves))
    each = " OR ".join([f"({one})"] * len(moves))
    sql = (f"UPDATE {table} SET next_run_time = CASE {cases} "  # noqa: S608
           f"ELSE next_run_time END "
           f"WHERE paused = 0 AND next_run_time IS NOT NULL AND ({each})")
    params: list[Any] = []
    for (job_id, version), nxt in moves:
        params += (job_id, version, nxt, nxt)
    for (job_id, version), nxt in moves:
        params += (job_id, version, nxt)
    return sql, params


def _db_value(value: Any) -> Any:
    return int(value) if isinstance(value, bool) else value


def _store(records: list[Record], cursors: dict[tuple[str, int], float]) -> int:
    """One transaction: insert rows, advance cursors, delete finished jobs."""
    deletes = {r.delete for r in records if r.delete}
    deleted = 0
    rows = [r.row for r in records if r.row is not None]
    # Plain executemany with bound parameters: peewee building the SQL row by row cost
    # more CPU than the fire itself. Only table and column names (ours) are formatted in.
    p = db.database.param
    with db.database.connection_context(), db.database.atomic():
        cursor = db.database.cursor()
        if rows:
            c_time = dt.datetime.now().strftime("%Y-%m-%d %H:%M:%S")
            mysql = isinstance(db.database.obj, peewee.MySQLDatabase)
            if mysql and isinstance(cursor, pymysql.cursors.Cursor):
                _pymysql_insert(cursor, History._meta.table_name, rows, c_time)
            else:
                sql = insert_sql(History._meta.table_name, mysql, p)
                cursor.executemany(sql, [(*(_db_value(row[c]) for c in HISTORY_COLUMNS),
                                          c_time) for row in rows])
        moves = list(cursors.items())
        for i in range(0, len(moves), CURSOR_CHUNK):
            sql, params = cursor_sql(Job._meta.table_name, p, moves[i:i + CURSOR_CHUNK])
            cursor.execute(sql, params)
        for job_id, version in deletes:
            deleted += Job.delete().where((Job.id == job_id) & (Job.version == version)).execute()
    return deleted


def prune(max_age_days: float, max_per_job: int, chunk: int = 5000) -> int:
    """Apply retention: drop rows older than ``max_age_days`` and all but the newest
    ``max_per_job`` rows of each job. Returns the number of rows deleted."""
    total = 0
    with db.database.connection_context():
        if max_age_days > 0:
            cutoff = dt.datetime.now() - dt.timedelta(days=max_age_days)
            while True:
                ids = [r.id for r in History.select(History.id)
                       .where(History.c_time < cutoff).limit(chunk)]
                if not ids:
                    break
                total += History.delete().where(History.id.in_(ids)).execute()
        over = (History.select(History.job_id).group_by(History.job_id)
                .having(peewee.fn.COUNT(History.id) > max_per_job))
        for row in list(over):
            edge = (History.select(History.id).where(History.job_id == row.job_id)
                    .order_by(History.id.desc()).offset(max_per_job).limit(1).first())
            if edge is not None:
                total += (History.delete()
                          .where((History.job_id == row.job_id) & (History.id <= edge.id))
                          .execute())
    return total
