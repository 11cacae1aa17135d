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
MAX_CATCHUP = 1000


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

    @classmethod
    def columns(cls) -> list[Any]:
        """The Job columns :meth:`from_tuple` takes, in order."""
        return [Job.id, Job.name, Job.trigger, Job.rule, Job.cmd, Job.timezone,
                Job.start_time, Job.paused, Job.misfire_grace_time, Job.coalesce,
                Job.overlap, Job.timeout, Job.wait_result, Job.version, Job.next_run_time,
                Job.pause_on_failure, Job.start_at, Job.end_at, Job.jitter]

    @classmethod
    def from_tuple(cls, t: tuple[Any, ...]) -> JobSpec:
        """From a ``select(*columns()).tuples()`` row: no model instance per job (a reload
        of 1,000 jobs several times a second was mostly peewee building models)."""
        return cls(t[0], t[1], t[2], t[3], t[4], t[5], float(t[6]), bool(t[7]), int(t[8]),
                   bool(t[9]), t[10], float(t[11]), bool(t[12]), int(t[13]),
                   None if t[14] is None else float(t[14]), int(t[15] or 0),
                   None if t[16] is None else float(t[16]),
                   None if t[17] is None else float(t[17]), float(t[18] or 0.0))

    @classmethod
    def from_row(cls, row: Job) -> JobSpec:
        return cls(row.id, row.name, row.trigger, row.rule, row.cmd, row.timezone,
                   row.start_time, bool(row.paused), row.misfire_grace_time,
                   bool(row.coalesce), row.overlap, row.timeout, bool(row.wait_result),
                   row.version, row.next_run_time, int(row.pause_on_failure or 0),
                   row.start_at, row.end_at, float(row.jitter or 0.0))


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

    @property
    def claim_ttl(self) -> float:
        return self.spec.misfire_grace_time + self.spec.timeout + DONE_TTL_EXTRA

    @property
    def done_ttl(self) -> float:
        return self.spec.misfire_grace_time + DONE_TTL_EXTRA


def make_owner(port: int | None = None) -> str:
    """``host:port:pid:<random>`` - unique even for several engines in one process."""
    return f"{socket.gethostname()}:{port or 0}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@dataclass
class Due:
    """What :func:`due_fires` found for one job."""

    fires: list[Fire]
    next_ts: float | None
    #: Run times skipped in bulk (the engine was down for longer than the grace).
    missed: int = 0


def due_times(slot: Slot, now: float) -> tuple[list[float], float | None, int]:
    """APScheduler's ``_get_run_times`` + coalesce, for one job: ``(run times, next, missed
    in bulk)``. Run times are nominal (no jitter); one is due when its jittered time is."""
    spec, grace = slot.spec, slot.spec.misfire_grace_time
    t = slot.next_ts
    assert t is not None
    missed = 0
    if now - t > grace + 1 and spec.trigger != "date":
        # Far behind (restart after an outage): everything before now-grace is missed.
        jump = rules.first_fire(slot.trig, slot.tz, now - grace)
        missed += 1
        log.warning("job %s: run times from %.3f to %.3f missed (grace %ss)",
                    spec.id, t, now - grace, grace)
        if jump is None or jump > now:
            return [], jump, missed
        t = max(t, jump)
    times: list[float] = []
    nxt: float | None = t
    while nxt is not None and slot.due(nxt) <= now and len(times) < MAX_CATCHUP:
        times.append(nxt)
        nxt = rules.next_fire(slot.trig, slot.tz, nxt, max(now, nxt))
    if spec.coalesce and times:
        times = times[-1:]
    return times, nxt, missed


def due_fires(slot: Slot, now: float) -> Due:
    """APScheduler's ``_get_run_times`` + coalesce + misfire grace, for one job.

    All run times from the job's cursor up to ``now`` are computed; with ``coalesce``
    only the latest is kept; a run time later than ``misfire_grace_time`` is missed
    (APScheduler drops those too, with a "missed" event): after an outage longer than the
    grace they are skipped in bulk, otherwise recorded one by one.
    """
    times, nxt, missed = due_times(slot, now)
    # Run times already past the grace are still claimed: the winner records them as
    # "missed" instead of running them (engine._execute), so history shows every fire.
    fires = [Fire(slot.spec, slot.due(ts), fire_key(slot.spec.id, round(slot.due(ts) * 1000)),
                  new_reqid(), cursor=nxt, last=nxt is None) for ts in times]
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
