"""Turn a job's (trigger, rule, timezone, start) columns into an APScheduler 3.x trigger.

APScheduler computes the fire times; this module only parses the original's rule syntax:

* ``cron``: 6 fields ``second minute hour day month day_of_week`` (the original, APScheduler
  weekday numbers, 0 = Monday) or 5 standard crontab fields ``minute hour day month dow``
  where, as in crontab, 0 and 7 are Sunday - APScheduler 3's ``from_crontab`` gets that
  wrong (its own docs warn about it), so the weekday field is translated to names here.
* ``interval``: ``<n>s|m|h|d``, counted from the job's stored start time so every replica
  computes the same instants.
* ``date``: ``YYYY-MM-DD[ HH:MM:SS[.ffffff]]`` or ``now``; ``now`` is resolved once, when the
  job is saved, or a reload would fire it again.
"""

from __future__ import annotations

import datetime as dt
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


def parse_date(rule: str, tz: ZoneInfo) -> dt.datetime:
    """The moment a date rule names, in ``tz``."""
    text = rule.strip()
    for fmt in _DATE_FORMATS:
        try:
            moment = dt.datetime.strptime(text, fmt).replace(tzinfo=tz)
        except (ValueError, OverflowError):
            continue
        if moment.year >= MAX_YEAR:  # near year 9999 a timezone shift overflows datetime
            raise Refusal("ERR_BAD_RULE", f"date rule {rule!r}: must be before {MAX_YEAR}")
        return moment
    raise Refusal("ERR_BAD_RULE", f"date rule {rule!r}: expected YYYY-MM-DD HH:MM:SS or now")


def normalize_rule(trigger: str, rule: str, tz: ZoneInfo, now: float) -> str:
    """Validate ``rule`` and return the form to store (``now`` becomes a fixed time)."""
    if trigger not in TRIGGERS:
        raise Refusal("ERR_BAD_TRIGGER", f"job_trigger {trigger!r} not in {list(TRIGGERS)}")
    rule = rule.strip()
    if trigger == "date" and rule.lower() == "now":
        moment = dt.datetime.fromtimestamp(now, tz)
        return moment.strftime("%Y-%m-%d %H:%M:%S.%f")
    build_trigger(trigger, rule, tz, now)
    return rule


def build_trigger(trigger: str, rule: str, tz: ZoneInfo, start_time: float) -> BaseTrigger:
    """The APScheduler trigger for a stored job; identical on every replica."""
    start = dt.datetime.fromtimestamp(start_time, tz)
    if trigger == "interval":
        return IntervalTrigger(seconds=interval_seconds(rule), start_date=start, timezone=tz)
    if trigger == "cron":
        return _cron(rule, tz, None)
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
