"""Turn a job's (trigger, rule, timezone, start) columns into an APScheduler 3.x trigger.

APScheduler computes the fire times; this module only parses the original's rule syntax:

* ``cron``: 6 fields ``second minute hour day month day_of_week`` (the original, APScheduler
  weekday numbers, 0 = Monday) or 5 standard crontab fields ``minute hour day month dow``
  where, as in crontab, 0 and 7 are Sunday - APScheduler 3's ``from_crontab`` gets that
  wrong (its own docs warn about it), so the weekday field is translated to names here.
* ``interval``: ``<n>s|m|h|d``, counted from the job's stored start time so every replica
  computes the same instants.
* ``date``: ``YYYY-MM-DD[ HH:MM:SS[.ffffff]][+HHMM]`` or ``now``; ``now`` is resolved once,
  when the job is saved, or a reload would fire it again.

Daylight saving time (docs/services/ruqi.md "Time zones and DST"), as cron does it:

* A **fixed-time** cron job (no ``*`` in its minute and hour fields, e.g. ``30 2 * * *``)
  runs once per local time it names: a local time that does not exist (spring forward)
  runs once at the first valid instant after the gap (the moment of the change: 02:30 in
  New York runs at 03:00 EDT); a local time that happens twice (fall back) runs once, at
  its first occurrence. :class:`WallClockCron` computes these; APScheduler shifted a
  skipped time by the gap's length (02:30 -> 03:30), skipped a day outright when the gap
  was at midnight (America/Santiago), and ran a repeated time twice.
* A **wildcard** cron job (``*`` in the minute or hour field, e.g. ``*/15 * * * *``) follows
  absolute time: it runs at every local time that exists, in both passes of a repeated
  hour, and the times of a skipped hour simply do not occur.
* ``interval`` is absolute time (APScheduler counts in epoch seconds): ``1d`` is 86,400 s,
  so a daily interval moves by an hour in local time across a change.
* ``date`` names a local time: one that does not exist runs at the first valid instant,
  one that happens twice at its first occurrence unless an offset (``+0000``) is given.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from butterfly_common import Refusal

TRIGGERS = ("cron", "interval", "date")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_INTERVAL = re.compile(r"^\s*(\d{1,12})\s*([smhd])\s*$")
#: The longest interval (ten years): beyond it datetime arithmetic overflows.
MAX_INTERVAL = 10 * 366 * 86400
MAX_YEAR = 9000
_DATE_FORMATS = ("%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d")
_DATE_OFFSET_FORMATS = ("%Y-%m-%d %H:%M:%S.%f%z", "%Y-%m-%d %H:%M:%S%z")
_UTC = dt.UTC
#: The most wall-clock candidates one step may skip (a repeated hour of a per-second rule).
_MAX_STEPS = 10_000
_DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]


def get_timezone(name: str) -> ZoneInfo:
    """The IANA zone ``name``, or Refusal(ERR_BAD_TIMEZONE)."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise Refusal("ERR_BAD_TIMEZONE", f"unknown timezone {name!r}") from None


def interval_seconds(rule: str) -> int:
    """Seconds of an interval rule ``<n>s|m|h|d`` (1 s .. ten years)."""
    match = _INTERVAL.match(rule)
    if not match or int(match.group(1)) < 1:
        raise Refusal("ERR_BAD_RULE", f"interval rule {rule[:40]!r}: expected <n>s|m|h|d, "
                      "n >= 1")
    seconds = int(match.group(1)) * _UNITS[match.group(2)]
    if seconds > MAX_INTERVAL:
        raise Refusal("ERR_BAD_RULE", f"interval rule {rule!r}: longer than ten years")
    return seconds


def _dow_value(token: str) -> int:
    token = token.lower()
    if token in _DAYS:
        return _DAYS.index(token)
    if token.isdigit() and int(token) <= 7:
        return int(token) % 7
    raise ValueError(f"bad day of week {token!r}")


def crontab_dow(field: str) -> str:
    """Translate a crontab day-of-week field (0/7 = Sunday) into APScheduler day names."""
    if field in ("*", "?"):
        return "*"
    days: set[int] = set()
    for part in field.split(","):
        base, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if step < 1:
            raise ValueError(f"bad step in {part!r}")
        if base == "*":
            first, last = 0, 6
        elif "-" in base:
            lo, hi = base.split("-", 1)
            first, last = _dow_value(lo), _dow_value(hi)
            if hi.strip() == "7":
                last = 7
            if last < first:
                raise ValueError(f"bad range {base!r}")
        else:
            first = _dow_value(base)
            last = 6 if step_text else first
        days.update(day % 7 for day in range(first, last + 1, step))
    return ",".join(_DAYS[day] for day in sorted(days))


def _cron(rule: str, tz: ZoneInfo, start: dt.datetime | None) -> CronTrigger:
    fields = rule.split()
    try:
        if len(fields) == 6:
            second, minute, hour, day, month, dow = fields
            return CronTrigger(second=second, minute=minute, hour=hour, day=day, month=month,
                               day_of_week=dow, timezone=tz, start_date=start)
        if len(fields) == 5:
            minute, hour, day, month, dow = fields
            return CronTrigger(second="0", minute=minute, hour=hour, day=day, month=month,
                               day_of_week=crontab_dow(dow), timezone=tz, start_date=start)
    except (ValueError, TypeError, OverflowError) as exc:
        raise Refusal("ERR_BAD_RULE", f"cron rule {rule!r}: {exc}") from None
    raise Refusal("ERR_BAD_RULE", f"cron rule {rule!r}: expected 6 fields (second first) "
                    "or 5 crontab fields")


def wall(ts: float, tz: ZoneInfo) -> dt.datetime:
    """The naive local wall-clock time of epoch ``ts`` in ``tz``."""
    return dt.datetime.fromtimestamp(ts, tz).replace(tzinfo=None)


def local_instant(naive: dt.datetime, tz: ZoneInfo) -> float:
    """Epoch seconds of local wall time ``naive`` in ``tz``, DST resolved as ruqi documents:
    a time that happens twice is its first occurrence, a time that does not exist (in a
    spring-forward gap) is the first valid instant after it - the moment of the change."""
    first = naive.replace(tzinfo=tz, fold=0)
    ts = first.timestamp()
    if abs((wall(ts, tz) - naive).total_seconds()) < 0.001:  # it exists
        return ts
    # In a gap: fold=1 reads it with the new offset (an instant before the change), fold=0
    # with the old one (after it). The change is the first instant whose wall time is past.
    lo = naive.replace(tzinfo=tz, fold=1).timestamp()
    hi = ts
    lo, hi = min(lo, hi), max(lo, hi)
    while hi - lo > 0.5:
        mid = (lo + hi) / 2
        if wall(mid, tz) >= naive:
            hi = mid
        else:
            lo = mid
    return float(round(hi))


def _offset(ts: float, tz: ZoneInfo) -> float:
    delta = dt.datetime.fromtimestamp(ts, tz).utcoffset()
    return delta.total_seconds() if delta is not None else 0.0


def _change_after(after: float, until: float, tz: ZoneInfo) -> float | None:
    """The first instant in ``(after, until]`` at which ``tz``'s UTC offset changes, or
    None. Assumes two changes are never within a day of each other (none are in tzdata
    since 1970)."""
    base = _offset(after, tz)
    if until - after <= 7 * 86400 and _offset(until, tz) == base:
        return None  # the hot path: no change between two fires a few seconds apart
    t = after
    while t < until:
        step = min(t + 86400, until)
        if _offset(step, tz) != base:
            lo, hi = t, step
            while hi - lo > 0.5:
                mid = (lo + hi) / 2
                lo, hi = (mid, hi) if _offset(mid, tz) == base else (lo, mid)
            return float(round(hi))
        t = step
    return None


class WallClockCron(BaseTrigger):  # type: ignore[misc]
    """A cron rule in local wall-clock time with ruqi's DST rules (module docstring).

    ``walls`` is the same rule in UTC, whose fire times are read as naive wall-clock times.
    Fixed-time rules map each wall time to one instant (:func:`local_instant`) and never
    fire an instant twice; wildcard rules fire at every instant whose wall time matches,
    walking the zone's constant-offset stretches (APScheduler's own stepping skipped the
    second pass of Pacific/Chatham's repeated 02:45-03:45)."""

    def __init__(self, walls: CronTrigger, tz: ZoneInfo, fixed: bool) -> None:
        self.walls = walls
        self.tz = tz
        self.fixed = fixed

    def _wall_at_or_after(self, naive: dt.datetime) -> dt.datetime | None:
        fire = self.walls.get_next_fire_time(None, naive.replace(tzinfo=_UTC))
        return None if fire is None else fire.replace(tzinfo=None)

    def get_next_fire_time(self, previous_fire_time: dt.datetime | None,
                           now: dt.datetime) -> dt.datetime | None:
        """The first fire after ``previous_fire_time`` (or at/after ``now`` when None)."""
        strict = previous_fire_time is not None
        after = (previous_fire_time or now).timestamp()
        ts = self._next_fixed(after, strict) if self.fixed else self._next_wild(after, strict)
        return None if ts is None else dt.datetime.fromtimestamp(ts, self.tz)

    def _next_fixed(self, after: float, strict: bool) -> float | None:
        cand = self._wall_at_or_after(wall(after, self.tz))
        for _ in range(_MAX_STEPS):
            if cand is None:
                return None
            ts = local_instant(cand, self.tz)
            if ts > after or (ts >= after and not strict):
                return ts
            cand = self._wall_at_or_after(cand + dt.timedelta(microseconds=1))
        return None

    def _next_wild(self, after: float, strict: bool) -> float | None:
        t = after
        for _ in range(64):  # constant-offset stretches walked
            offset = _offset(t, self.tz)
            naive = dt.datetime.fromtimestamp(t + offset, _UTC).replace(tzinfo=None)
            cand = self._wall_at_or_after(naive + dt.timedelta(microseconds=1) if strict
                                          else naive)
            if cand is None:
                return None
            ts = cand.replace(tzinfo=_UTC).timestamp() - offset
            change = _change_after(t, ts, self.tz)
            if change is None:
                return ts
            t, strict = change, False  # the offset changed first: go on from the change
        return None

    def __str__(self) -> str:
        return f"wallclock[{self.walls}, {'fixed' if self.fixed else 'wildcard'}]"


def fixed_time(rule: str) -> bool:
    """A cron rule with no ``*`` in its minute and hour fields (cron's "fixed time" jobs:
    the ones daylight saving time moves)."""
    fields = rule.split()
    minute, hour = (fields[0], fields[1]) if len(fields) == 5 else (fields[1], fields[2])
    return "*" not in minute and "*" not in hour


def parse_date(rule: str, tz: ZoneInfo) -> dt.datetime:
    """The moment a date rule names, in ``tz`` (DST as :func:`local_instant`); a rule
    with a UTC offset (``2026-10-25 01:30:00+0000``) names that exact instant."""
    text = rule.strip()
    for fmt in _DATE_OFFSET_FORMATS:
        try:
            exact = dt.datetime.strptime(text, fmt)
        except (ValueError, OverflowError):
            continue
        if exact.year >= MAX_YEAR:
            raise Refusal("ERR_BAD_RULE", f"date rule {rule!r}: must be before {MAX_YEAR}")
        return exact.astimezone(tz)
    for fmt in _DATE_FORMATS:
        try:
            naive = dt.datetime.strptime(text, fmt)
        except (ValueError, OverflowError):
            continue
        if naive.year >= MAX_YEAR:  # near year 9999 a timezone shift overflows datetime
            raise Refusal("ERR_BAD_RULE", f"date rule {rule!r}: must be before {MAX_YEAR}")
        return dt.datetime.fromtimestamp(local_instant(naive, tz), tz)
    raise Refusal("ERR_BAD_RULE", f"date rule {rule!r}: expected YYYY-MM-DD HH:MM:SS or now")


def normalize_rule(trigger: str, rule: str, tz: ZoneInfo, now: float) -> str:
    """Validate ``rule`` and return the form to store (``now`` becomes a fixed time)."""
    if trigger not in TRIGGERS:
        raise Refusal("ERR_BAD_TRIGGER", f"job_trigger {trigger!r} not in {list(TRIGGERS)}")
    rule = rule.strip()
    if trigger == "date" and rule.lower() == "now":
        moment = dt.datetime.fromtimestamp(now, tz)
        text = moment.strftime("%Y-%m-%d %H:%M:%S.%f")
        if moment.fold:
            # the second pass of a repeated hour: the local time alone would mean the first
            text = moment.strftime("%Y-%m-%d %H:%M:%S.%f%z")
        return text
    build_trigger(trigger, rule, tz, now)
    return rule


class Bounded(BaseTrigger):  # type: ignore[misc]
    """A trigger's fires within a job's ``start_at`` / ``end_at`` (either may be None)."""

    def __init__(self, inner: BaseTrigger, tz: ZoneInfo, start_at: float | None,
                 end_at: float | None) -> None:
        self.inner = inner
        self.start = None if start_at is None else dt.datetime.fromtimestamp(start_at, tz)
        self.end_at = end_at

    def get_next_fire_time(self, previous_fire_time: dt.datetime | None,
                           now: dt.datetime) -> dt.datetime | None:
        if self.start is not None and (previous_fire_time or now) < self.start:
            fire = self.inner.get_next_fire_time(None, self.start)  # the first at/after it
        else:
            fire = self.inner.get_next_fire_time(previous_fire_time, now)
        if fire is None or (self.end_at is not None and fire.timestamp() > self.end_at):
            return None
        return fire

    def __str__(self) -> str:
        return f"bounded[{self.inner}]"


def jitter_delay(job_id: str, ts: float, jitter: float) -> float:
    """The delay (whole ms in ``[0, jitter]`` s) of the fire of ``job_id`` scheduled at
    ``ts``: a hash of both, so every replica computes the same one, and it differs from
    slot to slot and job to job (1,000 jobs on one minute spread over the jitter)."""
    if jitter <= 0:
        return 0.0
    digest = hashlib.blake2b(f"{job_id}|{round(ts * 1000)}".encode(), digest_size=8).digest()
    return (int.from_bytes(digest, "big") % (round(jitter * 1000) + 1)) / 1000


def build_trigger(trigger: str, rule: str, tz: ZoneInfo, start_time: float,
                  start_at: float | None = None, end_at: float | None = None) -> BaseTrigger:
    """The trigger for a stored job (bounded by ``start_at`` / ``end_at`` when given);
    identical on every replica."""
    trig = _build_trigger(trigger, rule, tz, start_time)
    if start_at is None and end_at is None:
        return trig
    return Bounded(trig, tz, start_at, end_at)


def _build_trigger(trigger: str, rule: str, tz: ZoneInfo, start_time: float) -> BaseTrigger:
    start = dt.datetime.fromtimestamp(start_time, tz)
    if trigger == "interval":
        return IntervalTrigger(seconds=interval_seconds(rule), start_date=start, timezone=tz)
    if trigger == "cron":
        return WallClockCron(_cron(rule, ZoneInfo("UTC"), None), tz, fixed_time(rule))
    if trigger == "date":
        if rule.strip().lower() == "now":
            return DateTrigger(run_date=start, timezone=tz)
        return DateTrigger(run_date=parse_date(rule, tz), timezone=tz)
    raise Refusal("ERR_BAD_TRIGGER", f"job_trigger {trigger!r} not in {list(TRIGGERS)}")


def first_fire(trig: BaseTrigger, tz: ZoneInfo, after: float) -> float | None:
    """Epoch seconds of the first fire at or after ``after`` (None: the trigger is done)."""
    fire = trig.get_next_fire_time(None, dt.datetime.fromtimestamp(after, tz))
    return fire.timestamp() if fire else None


def next_fire(trig: BaseTrigger, tz: ZoneInfo, prev: float, now: float) -> float | None:
    """Epoch seconds of the fire following ``prev`` (APScheduler's own stepping)."""
    fire = trig.get_next_fire_time(dt.datetime.fromtimestamp(prev, tz),
                                   dt.datetime.fromtimestamp(now, tz))
    return fire.timestamp() if fire else None
