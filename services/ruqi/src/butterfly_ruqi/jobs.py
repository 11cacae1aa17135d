"""Job operations behind the HTTP API: validate, write the DB, tell every engine.

Every change is committed first and announced second (``INCR ruqi:version``), so an engine
that sees the bump always reads the new row. Modify and resume recompute the next run from
the new definition (the original kept the old next run time after a modify).
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import logging
import time
from dataclasses import dataclass
from typing import Any, cast

import peewee

from butterfly_common import Refusal, db
from butterfly_common.paging import check_page
from butterfly_common.runtime import get_config, get_redis

from . import rules
from .claims import BACKFILL_KEY, MANUAL_KEY, VERSION_KEY, failures_key, fire_key
from .commands import parse_command
from .config import OVERLAPS, RuqiConfig
from .models import History, Job, format_bound, format_ts, history_to_dict, job_to_dict

log = logging.getLogger("butterfly.ruqi.jobs")

ERR_JOB_EXIST = "ERR_JOB_EXIST"
ERR_JOB_NOT_FOUND = "ERR_JOB_NOT_FOUND"
ERR_BAD_JOB = "ERR_BAD_JOB"
#: ruqi's stat -> HTTP map (the Service's: every route answers these codes)
HTTP_CODES = {ERR_JOB_NOT_FOUND: 404, ERR_JOB_EXIST: 409}
#: misfire_grace_time and timeout are bounded so TTLs and DB columns never overflow.
MAX_GRACE = 86400
MAX_TIMEOUT = 86400
#: The deepest page a list serves (an offset beyond 64 bits overflows SQLite and MySQL).
MAX_PAGE_INDEX = 1_000_000


def config() -> RuqiConfig:
    """This process's ruqi settings, read and validated once by the framework."""
    return get_config(RuqiConfig)


@dataclass
class Options:
    """The optional per-job settings; None means the default (add) or unchanged (modify)."""

    timezone: str | None = None
    misfire_grace_time: int | None = None
    coalesce: bool | None = None
    overlap: str | None = None
    timeout: float | None = None
    wait_result: bool | None = None
    pause_on_failure: int | None = None
    #: ``YYYY-MM-DD HH:MM:SS`` in the job's zone (or with an offset); "" clears (modify)
    start_at: str | None = None
    end_at: str | None = None
    jitter: float | None = None
    catchup_window: int | None = None


#: pause_on_failure: consecutive failures (0: never pause).
MAX_PAUSE_ON_FAILURE = 1000
#: The longest jitter (seconds).
MAX_JITTER = 3600
#: The longest pause note (characters).
MAX_NOTE = 500
#: The longest catch-up window (seconds): a week. Done markers live as long (schedule.py).
MAX_CATCHUP_WINDOW = 7 * 86400
#: The most slots one backfill_job call runs or previews.
MAX_BACKFILL_SLOTS = 10_000
#: Fires looked at to check that the jitter is shorter than the time between fires.
JITTER_CHECK_FIRES = 10


def _bound(name: str, text: str | None, tz: Any, base: float | None) -> float | None:
    """A start_at / end_at value: None keeps ``base``, "" clears it."""
    if text is None:
        return base
    text = text.strip()
    if not text:
        return None
    if len(text) > 40:
        raise Refusal(ERR_BAD_JOB, f"{name} must be YYYY-MM-DD HH:MM:SS")
    try:
        return round(rules.parse_date(text, tz).timestamp(), 3)
    except Refusal:
        raise Refusal(ERR_BAD_JOB, f"{name} {text!r}: expected YYYY-MM-DD HH:MM:SS "
                      "(in the job's timezone, or with an offset such as +0000)") from None


def _check_jitter(jitter: float, trig: Any, tz: Any, first: float | None) -> None:
    if not 0 <= jitter <= MAX_JITTER:  # also refuses NaN
        raise Refusal(ERR_BAD_JOB, f"jitter must be 0..{MAX_JITTER} seconds")
    if jitter == 0 or first is None:
        return
    times = [first]
    while len(times) < JITTER_CHECK_FIRES:
        nxt = rules.next_fire(trig, tz, times[-1], times[-1])
        if nxt is None:
            break
        times.append(nxt)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    if gaps and jitter >= min(gaps):
        raise Refusal(ERR_BAD_JOB, f"jitter ({jitter:g} s) must be shorter than the time "
                      f"between fires ({min(gaps):g} s)")


def _check_note(note: str | None) -> str | None:
    if note is None:
        return None
    note = note.strip()
    if len(note) > MAX_NOTE or any(not c.isprintable() and c not in "\n\t" for c in note):
        raise Refusal(ERR_BAD_JOB, f"note must be at most {MAX_NOTE} printable characters")
    return note or None


def _check_text(name: str, value: str, limit: int) -> str:
    value = value.strip()
    if not value or len(value) > limit or not value.isprintable() or any(
            c.isspace() for c in value if name == "job_id"):
        raise Refusal(ERR_BAD_JOB, f"{name} must be 1..{limit} printable characters"
                       + (" without spaces" if name == "job_id" else ""))
    return value


def interval_start(trigger: str, rule: str, now: float, start_at: float | None = None) -> float:
    """Interval jobs first fire one interval after they are saved (APScheduler's default),
    or at ``start_at`` when that is later: the intervals count from there.

    Whole milliseconds: every run time is then a whole millisecond too, the same one in
    the fire key (``round(ts * 1000)``), the ``x-ruqi-scheduled`` header and the history,
    instead of a start like ``.4996 ms`` whose run times round one way in one place and
    the other way in another."""
    start = now + rules.interval_seconds(rule) if trigger == "interval" else now
    if trigger == "interval" and start_at is not None and start_at > start:
        start = start_at
    return round(start, 3)


def _fields(job_trigger: str, rule: str, cmd: str | None, opts: Options, base: Job | None,
            now: float) -> dict[str, Any]:
    """A job's stored fields, every refusal add_job / modify_job give; ``cmd`` None: the
    command is not checked (check_rule validates the schedule and options only)."""
    cfg = config()
    tz_name = opts.timezone or (base.timezone if base else cfg.timezone)
    if len(rule) > 128:
        raise Refusal("ERR_BAD_RULE", "rule longer than 128 characters")
    if len(tz_name) > 64:
        raise Refusal("ERR_BAD_TIMEZONE", "timezone longer than 64 characters")
    tz = rules.get_timezone(tz_name)
    stored_rule = rules.normalize_rule(job_trigger, rule, tz, now)
    if cmd is not None:
        parse_command(cmd, cfg.script_dir, cfg.cmd_max_len)
    if len(stored_rule) > 128:
        raise Refusal("ERR_BAD_RULE", "rule longer than 128 characters")

    def pick(value: Any, attr: str, default: Any) -> Any:
        if value is not None:
            return value
        return getattr(base, attr) if base is not None else default

    grace = pick(opts.misfire_grace_time, "misfire_grace_time", cfg.misfire_grace_time)
    pof = pick(opts.pause_on_failure, "pause_on_failure", 0)
    if not 0 <= pof <= MAX_PAUSE_ON_FAILURE:
        raise Refusal(ERR_BAD_JOB, f"pause_on_failure must be 0..{MAX_PAUSE_ON_FAILURE}")
    start_at = _bound("start_at", opts.start_at, tz, base.start_at if base else None)
    end_at = _bound("end_at", opts.end_at, tz, base.end_at if base else None)
    if start_at is not None and end_at is not None and end_at <= start_at:
        raise Refusal(ERR_BAD_JOB, "end_at must be later than start_at")
    jitter = float(pick(opts.jitter, "jitter", 0.0))
    catchup = pick(opts.catchup_window, "catchup_window", 0)
    if not 0 <= catchup <= MAX_CATCHUP_WINDOW:
        raise Refusal(ERR_BAD_JOB, f"catchup_window must be 0..{MAX_CATCHUP_WINDOW} seconds")
    overlap = pick(opts.overlap, "overlap", cfg.overlap)
    timeout = pick(opts.timeout, "timeout", cfg.timeout)
    if not 1 <= grace <= MAX_GRACE:
        raise Refusal(ERR_BAD_JOB, f"misfire_grace_time must be 1..{MAX_GRACE} seconds")
    if overlap not in OVERLAPS:
        raise Refusal(ERR_BAD_JOB, f"overlap must be one of {list(OVERLAPS)}")
    if not 0 < timeout <= MAX_TIMEOUT:
        raise Refusal(ERR_BAD_JOB, f"timeout must be in (0, {MAX_TIMEOUT}] seconds")
    start = interval_start(job_trigger, stored_rule, now, start_at)
    trig = rules.build_trigger(job_trigger, stored_rule, tz, start, start_at, end_at)
    first = rules.first_fire(trig, tz, now)
    if first is None or (job_trigger == "date" and first < now - grace):
        raise Refusal("ERR_BAD_RULE", f"{job_trigger} rule {stored_rule!r} never fires "
                       "(it is in the past, or outside start_at..end_at)")
    _check_jitter(jitter, trig, tz, first)
    return {
        "pause_on_failure": pof, "start_at": start_at, "end_at": end_at, "jitter": jitter,
        "catchup_window": int(catchup),
        "trigger": job_trigger, "rule": stored_rule, "cmd": (cmd or "").strip(),
        "timezone": tz_name,
        "start_time": start, "next_run_time": first,
        "misfire_grace_time": grace, "coalesce": pick(opts.coalesce, "coalesce", cfg.coalesce),
        "overlap": overlap, "timeout": float(timeout),
        "wait_result": pick(opts.wait_result, "wait_result", False),
    }


def announce() -> None:
    """Tell every engine to reload (they poll this counter every ~0.2 s)."""
    try:
        get_redis().incr(VERSION_KEY)
    except Exception:
        log.exception("could not announce a job change; engines pick it up within 30 s")


def _get(job_id: str) -> Job:
    job = Job.get_or_none(Job.id == job_id)
    if job is None:
        raise Refusal(ERR_JOB_NOT_FOUND, f"job {job_id!r} not found")
    return job


def add_job(job_trigger: str, job_id: str, job_name: str, cmd: str, rule: str,
            opts: Options, now: float | None = None) -> dict[str, Any]:
    """Create a job; ``now`` (epoch seconds) is the save time (tests simulate the clock)."""
    job_id = _check_text("job_id", job_id, 64)
    job_name = _check_text("job_name", job_name, 64)
    now = time.time() if now is None else now
    fields = _fields(job_trigger, rule, cmd, opts, None, now)
    with db.database.connection_context():
        if Job.get_or_none(Job.id == job_id) is not None:
            raise Refusal(ERR_JOB_EXIST, f"job {job_id!r} already exists")
        try:
            Job.create(id=job_id, name=job_name, version=1, **fields)
        except peewee.IntegrityError:
            raise Refusal(ERR_JOB_EXIST, f"job {job_id!r} already exists") from None
        job = _get(job_id)
    announce()
    return job_to_dict(job, display_next(job, now))


def modify_job(job_trigger: str, job_id: str, job_name: str, cmd: str, rule: str,
               opts: Options, now: float | None = None) -> dict[str, Any]:
    job_name = _check_text("job_name", job_name, 64)
    now = time.time() if now is None else now
    with db.database.connection_context():
        job = _get(job_id)
        fields = _fields(job_trigger, rule, cmd, opts, job, now)
        if job.paused:
            fields["next_run_time"] = None
        (Job.update(name=job_name, version=Job.version + 1, u_time=dt.datetime.now(), **fields)
         .where(Job.id == job_id).execute())
        job = _get(job_id)
    announce()
    return job_to_dict(job, display_next(job, now))


def remove_job(job_id: str) -> None:
    with db.database.connection_context():
        if not Job.delete().where(Job.id == job_id).execute():
            raise Refusal(ERR_JOB_NOT_FOUND, f"job {job_id!r} not found")
    announce()


def pause_job(job_id: str, note: str | None = None, by: str = "-",
              now: float | None = None, if_running: bool = False) -> bool:
    """Pause on every replica, with a note: who (``by``), why (``note``), when.
    ``if_running``: only a job not paused yet (pause_on_failure keeps an operator's note)."""
    note = _check_note(note)
    by = (by or "-")[:64]
    with db.database.connection_context():
        _get(job_id)
        query = Job.update(paused=True, next_run_time=None, version=Job.version + 1,
                           pause_note=note, paused_by=by,
                           paused_at=time.time() if now is None else now,
                           u_time=dt.datetime.now()).where(Job.id == job_id)
        if if_running:
            query = query.where(Job.paused == False)  # noqa: E712 (SQL, not Python)
        changed = bool(query.execute())
    announce()
    return changed


def resume_job(job_id: str, now: float | None = None) -> dict[str, Any]:
    """Recompute the next run from now; a job with no run left is removed (the original).

    A job with a ``catchup_window`` resumes from the moment it was paused instead (an
    interval job on its old grid): the engines then run the run times of the pause within
    the window and record the older ones ``missed`` (schedule.due_times)."""
    now = time.time() if now is None else now
    with db.database.connection_context():
        job = _get(job_id)
        tz = rules.get_timezone(job.timezone)
        since = now
        if job.catchup_window and job.paused_at is not None and job.paused_at < now:
            since = float(job.paused_at)
        start = interval_start(job.trigger, job.rule, now, job.start_at) \
            if job.trigger == "interval" and since == now else job.start_time
        trig = rules.build_trigger(job.trigger, job.rule, tz, start, job.start_at, job.end_at)
        nxt = rules.first_fire(trig, tz, since)
        window = max(job.misfire_grace_time, job.catchup_window or 0)
        if job.trigger == "date" and nxt is not None and nxt < now - window:
            nxt = None
        if nxt is None:
            Job.delete().where(Job.id == job_id).execute()
            announce()
            return {"removed": True}
        (Job.update(paused=False, next_run_time=nxt, start_time=start,
                    pause_note=None, paused_by=None, paused_at=None,
                    version=Job.version + 1, u_time=dt.datetime.now())
         .where(Job.id == job_id).execute())
        job = _get(job_id)
    reset_failures(job_id)
    announce()
    return job_to_dict(job, display_next(job, now))


def reset_failures(job_id: str) -> None:
    """Forget a job's consecutive failures (resume: the count starts again)."""
    try:
        get_redis().delete(failures_key(job_id))
    except Exception:
        log.exception("could not reset the failure count of %s", job_id)


MAX_CHECK_FIRES = 20


def check_rule(job_trigger: str, rule: str, timezone: str | None = None, count: int = 5,
               now: float | None = None, opts: Options | None = None,
               job_id: str | None = None) -> dict[str, Any]:
    """Validate a rule as ``add_job`` would and list its next ``count`` fire times (an
    interval counted from now, as a job saved now); nothing is stored. For the console's
    check-as-you-type. With ``opts`` the options are checked too, with add_job's own
    refusals, and the times respect the bounds (and the jitter, given the ``job_id`` it
    is derived from)."""
    now = time.time() if now is None else now
    if not 1 <= count <= MAX_CHECK_FIRES:
        raise Refusal(ERR_BAD_JOB, f"count must be 1..{MAX_CHECK_FIRES}")
    if opts is not None:
        return _check_with_options(job_trigger, rule, count, now, opts, job_id)
    if len(rule) > 128:
        raise Refusal("ERR_BAD_RULE", "rule longer than 128 characters")
    tz_name = timezone or config().timezone
    if len(tz_name) > 64:
        raise Refusal("ERR_BAD_TIMEZONE", "timezone longer than 64 characters")
    tz = rules.get_timezone(tz_name)
    stored = rules.normalize_rule(job_trigger, rule, tz, now)
    trig = rules.build_trigger(job_trigger, stored, tz, interval_start(job_trigger, stored, now))
    fires: list[float] = []
    nxt = rules.first_fire(trig, tz, now)
    while nxt is not None and len(fires) < count:
        fires.append(nxt)
        nxt = rules.next_fire(trig, tz, nxt, nxt)
    return {"job_trigger": job_trigger, "rule": stored, "timezone": tz_name,
            "next_fire_times": [format_ts(f) for f in fires]}


def _check_with_options(job_trigger: str, rule: str, count: int, now: float, opts: Options,
                        job_id: str | None) -> dict[str, Any]:
    """check_rule with options: add_job's validation (the command aside), fire times within
    the bounds, jittered as the engines would for ``job_id``."""
    f = _fields(job_trigger, rule, None, opts, None, now)
    tz = rules.get_timezone(f["timezone"])
    trig = rules.build_trigger(job_trigger, f["rule"], tz, f["start_time"], f["start_at"],
                               f["end_at"])
    jid = job_id or ""
    jittered = bool(jid) and f["jitter"] > 0
    fires: list[float] = []
    nxt: float | None = f["next_run_time"]
    while nxt is not None and len(fires) < count:
        fires.append(round(nxt + rules.jitter_delay(jid, nxt, f["jitter"]), 3) if jittered
                     else nxt)
        nxt = rules.next_fire(trig, tz, nxt, nxt)
    options = {k: f[k] for k in ("overlap", "pause_on_failure", "jitter", "catchup_window",
                                 "timeout", "misfire_grace_time")}
    options["start_at"] = format_bound(f["start_at"], f["timezone"])
    options["end_at"] = format_bound(f["end_at"], f["timezone"])
    return {"job_trigger": job_trigger, "rule": f["rule"], "timezone": f["timezone"],
            "next_fire_times": [format_ts(t) for t in fires], "options": options,
            "jittered": jittered}


def _jittered(job: Job, ts: float | None) -> float | None:
    if ts is None or not job.jitter:
        return ts
    return round(ts + rules.jitter_delay(job.id, ts, job.jitter), 3)


def _nominal_next(job: Job, now: float) -> float | None:
    if job.paused or job.next_run_time is None:
        return None
    if job.next_run_time >= now - 1 or job.trigger == "date":
        return float(job.next_run_time)
    try:
        tz = rules.get_timezone(job.timezone)
        trig = rules.build_trigger(job.trigger, job.rule, tz, job.start_time, job.start_at,
                                   job.end_at)
        return rules.first_fire(trig, tz, now)
    except Refusal:
        return float(job.next_run_time)


def display_next(job: Job, now: float | None = None) -> float | None:
    """The next fire to show, jitter included: the stored cursor, or the next one after now
    if it lags."""
    return _jittered(job, _nominal_next(job, time.time() if now is None else now))


NEXT_RUNS = 5


def next_runs(job: Job, now: float | None = None, count: int = NEXT_RUNS) -> list[float]:
    """The job's next ``count`` fires as the engines will run them (jitter and bounds
    applied); empty when paused."""
    nxt = _nominal_next(job, time.time() if now is None else now)
    if nxt is None:
        return []
    try:
        tz = rules.get_timezone(job.timezone)
        trig = rules.build_trigger(job.trigger, job.rule, tz, job.start_time, job.start_at,
                                   job.end_at)
    except Refusal:
        return []
    out: list[float] = []
    while nxt is not None and len(out) < count:
        out.append(_jittered(job, nxt) or nxt)
        nxt = rules.next_fire(trig, tz, nxt, nxt)
    return out


def get_job(job_id: str, now: float | None = None) -> dict[str, Any]:
    """One job, with its next runs (jitter applied)."""
    with db.database.connection_context():
        job = _get(job_id)
    data = job_to_dict(job, display_next(job, now))
    data["next_runs"] = [format_ts(t) for t in next_runs(job, now)]
    return data


#: The columns a list may be sorted by (``orderBy``, as the original admin UI sends it):
#: API field name -> model field. Never an arbitrary attribute.
JOB_ORDER = {"job_id": Job.id, "job_name": Job.name, "job_trigger": Job.trigger,
             "next_run_time": Job.next_run_time, "nexttime": Job.next_run_time,
             "paused": Job.paused, "c_time": Job.c_time, "u_time": Job.u_time}
HISTORY_ORDER = {"id": History.id, "job_id": History.job_id, "job_name": History.job_name,
                 "status": History.status, "cmd_is_success": History.cmd_is_success,
                 "cmd_cost": History.cmd_cost, "scheduled_time": History.scheduled_time,
                 "start_time": History.start_time, "end_time": History.end_time,
                 "c_time": History.c_time}


def order(columns: dict[str, Any], order_by: str | None, order_dir: str | None,
          default: list[Any], tie: Any) -> list[Any]:
    """The ORDER BY of a list: an allow-listed column and asc|desc, else ``default``."""
    if order_dir not in (None, "", "asc", "desc"):
        raise Refusal("ERR_BAD_PARAMS", "orderDir must be asc or desc")
    if not order_by:
        return default
    field = columns.get(order_by)
    if field is None:
        raise Refusal("ERR_BAD_PARAMS", f"orderBy must be one of {sorted(columns)}")
    return [field.desc() if order_dir == "desc" else field.asc(), tie]


def _page(query: Any, page_index: int, page_size: int) -> tuple[int, list[Any]]:
    """One page (the first by default: a list is never unbounded); bad values are
    ERR_BAD_PARAMS through the framework's own check."""
    if page_index > MAX_PAGE_INDEX:
        raise Refusal("ERR_BAD_PARAMS", f"page_index must be <= {MAX_PAGE_INDEX}")
    offset, limit = check_page(page_index, page_size)
    return query.count(), list(query.offset(offset).limit(limit))


def list_jobs(job_id: str | None, job_name: str | None, page_index: int, page_size: int,
              order_by: str | None = None, order_dir: str | None = None) -> dict[str, Any]:
    sort = order(JOB_ORDER, order_by, order_dir, [Job.c_time.desc(), Job.id], Job.id)
    with db.database.connection_context():
        query = Job.select().order_by(*sort)
        if job_id:
            query = query.where(Job.id == job_id)
        if job_name:
            query = query.where(Job.name == job_name)
        total, rows = _page(query, page_index, page_size)
    now = time.time()
    return {"total": total, "list": [job_to_dict(j, display_next(j, now)) for j in rows]}


def list_history(job_id: str | None, job_name: str | None, is_success: str | None,
                 page_index: int, page_size: int, order_by: str | None = None,
                 order_dir: str | None = None) -> dict[str, Any]:
    sort = order(HISTORY_ORDER, order_by, order_dir, [History.id.desc()], History.id.desc())
    with db.database.connection_context():
        query = History.select().order_by(*sort)
        if job_id:
            query = query.where(History.job_id == job_id)
        if job_name:
            query = query.where(History.job_name == job_name)
        if is_success in ("yes", "no"):
            query = query.where(History.cmd_is_success == (is_success == "yes"))
        total, rows = _page(query, page_index, page_size)
    return {"total": total, "list": [history_to_dict(r) for r in rows]}


def _slot_times(job: Job, start: float, end: float, limit: int) -> list[float]:
    """The job's nominal run times in ``[start, end]`` (its bounds applied), at most
    ``limit``. An interval job's grid is extended back before its start time."""
    tz = rules.get_timezone(job.timezone)
    base = float(job.start_time)
    if job.trigger == "interval" and start < base:
        step = rules.interval_seconds(job.rule)
        base -= -(-(base - start) // step) * step
    trig = rules.build_trigger(job.trigger, job.rule, tz, base, job.start_at, job.end_at)
    out: list[float] = []
    t = rules.first_fire(trig, tz, start)
    while t is not None and t <= end and len(out) < limit:
        out.append(t)
        t = rules.next_fire(trig, tz, t, t)
    return out


def _already_run(keys: list[str]) -> set[str]:
    """The fire keys among ``keys`` that have a history row (a backfill that ran)."""
    done: set[str] = set()
    for i in range(0, len(keys), 500):
        found = cast("list[tuple[str]]", list(
            History.select(History.fire_key)
            .where(History.fire_key.in_(keys[i:i + 500])).tuples()))
        done.update(row[0] for row in found)
    return done


def backfill_job(job_id: str, start: str, end: str, overlap: str | None = None,
                 dry_run: bool = False, reqid: str = "-",
                 now: float | None = None) -> dict[str, Any]:
    """Run the fires of a past range ``[start, end]`` again, each with its own scheduled
    time (jitter applied) and its own fire key ``ruqi:fire:<job>:b<ms>``.

    Idempotent: a slot whose backfill fire has a history row is not run again (nor one a
    previous backfill still has claimed: the claim is ``SET NX``). At most
    ``MAX_BACKFILL_SLOTS`` slots per call; ``dry_run`` lists them without running any.
    The fires are queued for the first engine that polls (``ruqi:backfill``)."""
    now = time.time() if now is None else now
    if overlap is not None and overlap not in OVERLAPS:
        raise Refusal(ERR_BAD_JOB, f"overlap must be one of {list(OVERLAPS)}")
    with db.database.connection_context():
        job = _get(job_id)
        tz = rules.get_timezone(job.timezone)
        first = _bound("start", start, tz, None)
        last = _bound("end", end, tz, None)
        if first is None or last is None:
            raise Refusal(ERR_BAD_JOB, "start and end are required (YYYY-MM-DD HH:MM:SS)")
        if last < first:
            raise Refusal(ERR_BAD_JOB, "end must not be before start")
        if last > now:
            raise Refusal(ERR_BAD_JOB, "end is in the future: a backfill runs past fires "
                          "only (the schedule runs the others)")
        times = _slot_times(job, first, last, MAX_BACKFILL_SLOTS + 1)
        if len(times) > MAX_BACKFILL_SLOTS:
            raise Refusal(ERR_BAD_JOB, f"more than {MAX_BACKFILL_SLOTS} slots between start "
                          "and end: backfill a shorter range per call")
        stamps = [round((_jittered(job, t) or t) * 1000) for t in times]
        keys = [fire_key(job.id, ms, backfill=True) for ms in stamps]
        done = _already_run(keys)
    todo = [ms for ms, key in zip(stamps, keys, strict=True) if key not in done]
    data: dict[str, Any] = {
        "job_id": job.id, "start": format_bound(first, job.timezone),
        "end": format_bound(last, job.timezone), "overlap": overlap or job.overlap,
        "slots": len(stamps), "already_run": len(stamps) - len(todo),
        "to_run": len(todo), "dry_run": dry_run, "reqid": reqid,
    }
    if dry_run:
        data["slot_times"] = [format_ts(ms / 1000) for ms in stamps]
        data["already_run_times"] = [format_ts(ms / 1000) for ms, key in
                                     zip(stamps, keys, strict=True) if key in done]
        return data
    if todo:
        get_redis().rpush(BACKFILL_KEY, json.dumps({
            "job_id": job.id, "overlap": overlap, "reqid": reqid, "ms": todo}))
    log.info("backfill %s of job %s: %d slots from %s to %s, %d queued", reqid, job.id,
             len(stamps), start, end, len(todo))
    return data


def run_job(job_id: str, reqid: str) -> dict[str, Any]:
    """Queue a fire-now for whichever engine polls first (any replica)."""
    with db.database.connection_context():
        _get(job_id)
    ts = time.time()
    get_redis().rpush(MANUAL_KEY, json.dumps({"job_id": job_id, "ts": ts, "reqid": reqid}))
    return {"job_id": job_id, "scheduled_ms": round(ts * 1000), "reqid": reqid}


def next_wakeup() -> float | None:
    """The earliest stored next run (for ``status`` when no engine runs here)."""
    with db.database.connection_context():
        row = (Job.select(Job.next_run_time).where(Job.next_run_time.is_null(False))
               .order_by(Job.next_run_time).first())
    return row.next_run_time if row else None
