"""What is due: job snapshots, fires, and APScheduler's run-time rules for one job.

Pure computation, no Redis and no DB, so the misfire / coalesce behaviour is easy to read
against APScheduler's ``Job._get_run_times`` and ``run_job``.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from dataclasses import dataclass, field
from typing import Any

from apscheduler.triggers.base import BaseTrigger

from butterfly_common.reqid import new_reqid

from . import rules
from .claims import fire_key
from .models import Job

log = logging.getLogger("butterfly.ruqi.engine")

#: Done markers outlive the misfire grace by this much (clock skew, slow peers).
DONE_TTL_EXTRA = 30.0
#: Run times claimed per job in one claim round (a longer catch-up goes on in the next).
MAX_CATCHUP = 1000
#: Run times older than the catch-up window recorded ``missed`` one by one per job and
#: catch-up; the rest of a longer outage is one more ``missed`` row that says so.
MAX_MISSED_ROWS = 20
#: How long the claim and done keys of a backfill fire live (a second backfill of the
#: same range within it finds them; after it, the history rows, see jobs.backfill_job).
BACKFILL_TTL = 86400.0


@dataclass(frozen=True)
class JobSpec:
    """An immutable snapshot of a job row; two snapshots differ iff the schedule changed."""

    id: str
    name: str
    trigger: str
    rule: str
    cmd: str
    timezone: str
    start_time: float
    paused: bool
    misfire_grace_time: int
    coalesce: bool
    overlap: str
    timeout: float
    wait_result: bool
    version: int
    next_run_time: float | None = field(compare=False, default=None)
    pause_on_failure: int = 0
    start_at: float | None = None
    end_at: float | None = None
    jitter: float = 0.0
    #: Seconds back a catch-up runs fires (0: the misfire grace); see :attr:`window`.
    catchup_window: int = 0

    @property
    def window(self) -> float:
        """How late a run time may still run after the fleet was down or the job paused:
        ``max(misfire_grace_time, catchup_window)``."""
        return float(max(self.misfire_grace_time, self.catchup_window))

    @classmethod
    def columns(cls) -> list[Any]:
        """The Job columns :meth:`from_tuple` takes, in order."""
        return [Job.id, Job.name, Job.trigger, Job.rule, Job.cmd, Job.timezone,
                Job.start_time, Job.paused, Job.misfire_grace_time, Job.coalesce,
                Job.overlap, Job.timeout, Job.wait_result, Job.version, Job.next_run_time,
                Job.pause_on_failure, Job.start_at, Job.end_at, Job.jitter,
                Job.catchup_window]

    @classmethod
    def from_tuple(cls, t: tuple[Any, ...]) -> JobSpec:
        """From a ``select(*columns()).tuples()`` row: no model instance per job (a reload
        of 1,000 jobs several times a second was mostly peewee building models)."""
        return cls(t[0], t[1], t[2], t[3], t[4], t[5], float(t[6]), bool(t[7]), int(t[8]),
                   bool(t[9]), t[10], float(t[11]), bool(t[12]), int(t[13]),
                   None if t[14] is None else float(t[14]), int(t[15] or 0),
                   None if t[16] is None else float(t[16]),
                   None if t[17] is None else float(t[17]), float(t[18] or 0.0),
                   int(t[19] or 0))

    @classmethod
    def from_row(cls, row: Job) -> JobSpec:
        return cls(row.id, row.name, row.trigger, row.rule, row.cmd, row.timezone,
                   row.start_time, bool(row.paused), row.misfire_grace_time,
                   bool(row.coalesce), row.overlap, row.timeout, bool(row.wait_result),
                   row.version, row.next_run_time, int(row.pause_on_failure or 0),
                   row.start_at, row.end_at, float(row.jitter or 0.0),
                   int(row.catchup_window or 0))


@dataclass
class Slot:
    """One scheduled job in an engine: its trigger and its next fire time."""

    spec: JobSpec
    trig: BaseTrigger
    tz: Any
    next_ts: float | None
    #: A peer owns the job: out of the fire loop's heap until the owner leaves.
    parked: bool = False

    def due(self, ts: float) -> float:
        """When the run time ``ts`` fires: ``ts`` delayed by the job's jitter."""
        return due_at(self.spec, ts)


def due_at(spec: JobSpec, ts: float) -> float:
    """Run time ``ts`` of ``spec`` with its jitter (the same on every replica)."""
    if spec.jitter <= 0:
        return ts
    return round(ts + rules.jitter_delay(spec.id, ts, spec.jitter), 3)


@dataclass
class Fire:
    """One (job, scheduled time) this engine is claiming, running or watching."""

    spec: JobSpec
    ts: float
    key: str
    reqid: str
    manual: bool = False
    cursor: float | None = None
    last: bool = False
    check_at: float = 0.0
    #: The engine's claim round that won it: fires of one round are never coalesced.
    batch: int = 0
    #: Set (under the engine's lock) when a newer fire of the job replaced it in the queue.
    superseded: float | None = None
    #: Claimed straight into the running phase (an idle worker was waiting for it).
    started: bool = False
    #: A run time of a catch-up (the job was behind by more than its grace): it may start
    #: up to the job's catch-up window late, and is never coalesced.
    catchup: bool = False
    #: A fire of a backfill (jobs.backfill_job): runs however old, never coalesced.
    backfill: bool = False
    #: Set when the fire is not to run: recorded ``missed`` with this reason.
    missed: str | None = None

    @property
    def late_limit(self) -> float:
        """How late the fire may start; later, it is recorded ``missed``."""
        if self.backfill:
            return float("inf")
        return self.spec.window if self.catchup else float(self.spec.misfire_grace_time)

    @property
    def claim_ttl(self) -> float:
        return self.done_ttl + self.spec.timeout

    @property
    def done_ttl(self) -> float:
        """Done markers outlive the time a run time may be claimed again (the catch-up
        window: a restart's cursor may lag behind fires that ran)."""
        return (BACKFILL_TTL if self.backfill else self.spec.window) + DONE_TTL_EXTRA


def make_owner(port: int | None = None) -> str:
    """``host:port:pid:<random>`` - unique even for several engines in one process."""
    return f"{socket.gethostname()}:{port or 0}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@dataclass
class Due:
    """What :func:`due_fires` found for one job."""

    fires: list[Fire]
    next_ts: float | None
    #: Fires among ``fires`` that are only to be recorded ``missed`` (older than the
    #: catch-up window, or coalesced).
    missed: int = 0


@dataclass
class Times:
    """What :func:`due_times` found: nominal run times (no jitter) by fate."""

    run: list[float]
    next_ts: float | None
    #: older than the catch-up window: recorded ``missed`` one by one
    missed: list[float] = field(default_factory=list)
    #: the first of the run times older than the window past ``MAX_MISSED_ROWS``: one row
    #: for it and every later one up to ``window_start``
    missed_rest: float | None = None
    window_start: float = 0.0
    #: within the window but dropped by ``coalesce`` (the last of ``run`` replaces them)
    coalesced: list[float] = field(default_factory=list)
    #: the job was behind by more than its grace: the run times are a catch-up
    catchup: bool = False


def due_times(slot: Slot, now: float) -> Times:
    """APScheduler's ``_get_run_times`` + coalesce, with ruqi's catch-up window.

    Run times from the job's cursor up to ``now``: those whose (jittered) time is more
    than the job's window (``max(misfire_grace_time, catchup_window)``) ago are missed
    (the first ``MAX_MISSED_ROWS`` one by one, the rest of a longer outage as one), the
    others run - each, or with ``coalesce`` only the latest. At most ``MAX_CATCHUP`` run
    times per call; the next call goes on from ``next_ts``."""
    spec = slot.spec
    t = slot.next_ts
    assert t is not None
    edge = now - spec.window
    out = Times([], t, window_start=edge)
    if slot.due(t) < edge:
        while t is not None and slot.due(t) < edge and len(out.missed) < MAX_MISSED_ROWS:
            out.missed.append(t)
            t = rules.next_fire(slot.trig, slot.tz, t, t)
        if t is not None and slot.due(t) < edge:
            out.missed_rest = t
            t = rules.first_fire(slot.trig, slot.tz, edge)
            if t is not None and t <= out.missed_rest:
                t = rules.next_fire(slot.trig, slot.tz, out.missed_rest, out.missed_rest)
        log.warning("job %s: run times from %.3f to %.3f missed (catch-up window %ss)",
                    spec.id, out.missed[0], edge, spec.window)
    if t is not None and now - slot.due(t) > spec.misfire_grace_time:
        out.catchup = True
    nxt: float | None = t
    while nxt is not None and slot.due(nxt) <= now and len(out.run) < MAX_CATCHUP:
        out.run.append(nxt)
        nxt = rules.next_fire(slot.trig, slot.tz, nxt, max(now, nxt))
    if spec.coalesce and len(out.run) > 1:
        out.coalesced, out.run = out.run[:-1], out.run[-1:]
    out.next_ts = nxt
    return out


def _fmt(ts: float) -> str:
    return f"{ts:.3f}"


def due_fires(slot: Slot, now: float) -> Due:
    """The fires of :func:`due_times`: to run, or to record ``missed`` with a reason.

    Missed run times are still claimed: the winner records them (engine._execute), so
    history shows every fire once, whichever replica computed it."""
    found = due_times(slot, now)
    spec, nxt = slot.spec, found.next_ts
    fires: list[Fire] = []

    def add(ts: float, missed: str | None = None, cursor: float | None = nxt) -> None:
        due = slot.due(ts)
        fires.append(Fire(spec, due, fire_key(spec.id, round(due * 1000)), new_reqid(),
                          cursor=cursor, last=cursor is None, catchup=found.catchup,
                          missed=missed))

    window = (f"catch-up window {spec.window:g}s: max(misfire_grace_time="
              f"{spec.misfire_grace_time}, catchup_window={spec.catchup_window})")
    for ts in found.missed:
        add(ts, f"missed: the engines were down or the job paused; {now - slot.due(ts):.3f}s "
                f"late, older than the {window}", cursor=nxt if nxt is not None else None)
    if found.missed_rest is not None:
        add(found.missed_rest, f"missed: this run time and every later one before "
                               f"{_fmt(found.window_start)} (more than {MAX_MISSED_ROWS} in "
                               f"one outage, not listed one by one), older than the {window}")
    for ts in found.coalesced:
        add(ts, f"missed: coalesced (coalesce=true) into the run of "
                f"{_fmt(slot.due(found.run[-1]))}")
    for ts in found.run:
        add(ts)
    missed = len(fires) - len(found.run)
    return Due(fires, nxt, missed)


def catch_up_fires(slot: Slot, since: float, until: float) -> list[Fire]:
    """The fires of run times in ``[since, until)``: the share of a job whose owner died
    while this engine had it parked (engine ``_membership``).

    With ``coalesce`` only the latest is kept, as :func:`due_fires` would have."""
    spec = slot.spec
    times: list[float] = []
    t = rules.first_fire(slot.trig, slot.tz, since)
    while t is not None and t < until and len(times) < MAX_CATCHUP:
        times.append(t)
        t = rules.next_fire(slot.trig, slot.tz, t, until)
    if spec.coalesce and times:
        times = times[-1:]
    follow = [*times[1:], t]
    return [Fire(spec, slot.due(ts), fire_key(spec.id, round(slot.due(ts) * 1000)),
                 new_reqid(), cursor=nx, last=nx is None)
            for ts, nx in zip(times, follow, strict=True)]
