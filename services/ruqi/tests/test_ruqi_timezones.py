"""Exact time-zone behaviour: cron, interval and date jobs across both DST changes of 2026
in zones with whole, 30- and 45-minute offsets and in both hemispheres.

The rules (docs/services/ruqi.md "Time zones and DST"):

* fixed-time cron (no ``*`` in minute and hour): a local time skipped by spring-forward runs
  once, at the first valid instant (the moment of the change); a local time repeated by
  fall-back runs once, at its first occurrence;
* wildcard cron (``*`` in minute or hour): every local time that exists, in absolute time;
* interval: absolute time; date: as fixed-time cron, or an exact instant with an offset.

The expected instants are derived here independently of ruqi - from the zone's UTC offsets
scanned minute by minute - and pinned by hand for the well-known cases. The fire times are
the ones ruqi computes: ``schedule.due_fires`` driven by a simulated clock (what the engine
calls on every wake-up), and, end to end, an engine with an injected clock whose history
rows are read back (SQLite and MariaDB).
"""

from __future__ import annotations

import datetime as dt
import itertools
from zoneinfo import ZoneInfo

import pytest
from ruqi_sim import SimClock

from butterfly_common import db
from butterfly_common.testing import wait_until
from butterfly_ruqi import jobs, rules
from butterfly_ruqi.models import History
from butterfly_ruqi.schedule import JobSpec, Slot, due_fires

UTC = dt.UTC
YEAR = 2026
ZONES = ["Europe/London", "America/New_York", "Asia/Shanghai", "Asia/Kolkata",
         "Asia/Kathmandu", "Australia/Adelaide", "Australia/Lord_Howe", "Pacific/Chatham",
         "America/Santiago", "Australia/Sydney"]


def utc(*args: int) -> float:
    return dt.datetime(*args, tzinfo=UTC).timestamp()


def transitions(zone: str) -> list[tuple[float, int, int]]:
    """``(instant, old offset s, new offset s)`` of every change of ``zone`` in YEAR, found
    by scanning the offsets (hourly, then to the minute) - independent of ruqi."""
    tz = ZoneInfo(zone)

    def off(ts: float) -> int:
        delta = dt.datetime.fromtimestamp(ts, tz).utcoffset()
        assert delta is not None
        return int(delta.total_seconds())

    out = []
    t, end = utc(YEAR, 1, 1), utc(YEAR + 1, 1, 1)
    while t < end:
        if off(t) != off(t + 3600):
            lo, hi = t, t + 3600
            while hi - lo > 60:
                mid = lo + (hi - lo) // 120 * 60
                lo, hi = (mid, hi) if off(mid) == off(lo) else (lo, mid)
            out.append((hi, off(lo), off(hi)))
        t += 3600
    return out


def local(ts: float, zone: str) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts, ZoneInfo(zone)).replace(tzinfo=None)


def spec(trigger: str, rule: str, zone: str, start: float, grace: int = 30) -> JobSpec:
    return JobSpec("j", "j", trigger, rule, "/a/b", zone, start, False, grace, False, "allow",
                   60.0, False, 1)


def simulate(trigger: str, rule: str, zone: str, since: float, until: float,
             start: float | None = None) -> list[float]:
    """The run times ruqi fires for a job saved at ``since``, its engine woken by a
    simulated clock exactly at each next run time (and once more late, to prove a fire
    is never repeated), up to ``until``."""
    tz = rules.get_timezone(zone)
    stored = rules.normalize_rule(trigger, rule, tz, since)
    begin = jobs.interval_start(trigger, stored, since) if start is None else start
    trig = rules.build_trigger(trigger, stored, tz, begin)
    slot = Slot(spec(trigger, stored, zone, begin), trig, tz, rules.first_fire(trig, tz, since))
    fired: list[float] = []
    while slot.next_ts is not None and slot.next_ts <= until:
        for now in (slot.next_ts, slot.next_ts + 0.5):  # the clock: due, then a bit later
            due = due_fires(slot, now)
            assert due.missed == 0
            fired += [f.ts for f in due.fires]
            slot.next_ts = due.next_ts
            if slot.next_ts is None:
                break
    assert fired == sorted(set(fired)), "a run time fired twice or out of order"
    return fired


def daily_window(ts: float) -> tuple[float, float]:
    return ts - 3 * 86400, ts + 3 * 86400


# -- zones without DST: plain offsets, including 30 and 45 minutes -----------------------
@pytest.mark.parametrize(("zone", "first_utc"), [
    ("Asia/Kolkata", (YEAR, 3, 7, 21, 0)),      # +05:30: 02:30 local is 21:00Z the day before
    ("Asia/Kathmandu", (YEAR, 3, 7, 20, 45)),   # +05:45
    ("Asia/Shanghai", (YEAR, 3, 7, 18, 30)),    # +08:00
])
def test_fixed_offset_zones_fire_at_their_offset(zone, first_utc):
    assert transitions(zone) == []
    got = simulate("cron", "30 2 * * *", zone, utc(YEAR, 3, 7), utc(YEAR, 3, 10, 12))
    assert got == [utc(*first_utc) + d * 86400 for d in range(3)]
    assert all(local(t, zone).time() == dt.time(2, 30) for t in got)


# -- well-known cases pinned by hand -------------------------------------------------------
@pytest.mark.parametrize(("zone", "rule", "since", "expected"), [
    # New York springs 02:00 EST -> 03:00 EDT on Mar 8: 02:30 runs at 03:00 EDT (07:00Z)
    ("America/New_York", "30 2 * * *", (YEAR, 3, 7),
     [(YEAR, 3, 7, 7, 30), (YEAR, 3, 8, 7, 0), (YEAR, 3, 9, 6, 30)]),
    # ... and falls back 02:00 EDT -> 01:00 EST on Nov 1: 01:30 runs once, EDT (05:30Z)
    ("America/New_York", "30 1 * * *", (YEAR, 10, 31),
     [(YEAR, 10, 31, 5, 30), (YEAR, 11, 1, 5, 30), (YEAR, 11, 2, 6, 30)]),
    ("Europe/London", "30 1 * * *", (YEAR, 3, 28),
     [(YEAR, 3, 28, 1, 30), (YEAR, 3, 29, 1, 0), (YEAR, 3, 30, 0, 30)]),
    ("Europe/London", "30 1 * * *", (YEAR, 10, 24),
     [(YEAR, 10, 24, 0, 30), (YEAR, 10, 25, 0, 30), (YEAR, 10, 26, 1, 30)]),
    # Lord Howe moves by 30 minutes: 02:00 -> 02:30 (+10:30 -> +11:00) on Oct 4
    ("Australia/Lord_Howe", "15 2 * * *", (YEAR, 10, 3),
     [(YEAR, 10, 2, 15, 45), (YEAR, 10, 3, 15, 30), (YEAR, 10, 4, 15, 15)]),
    # Chatham: 02:45 -> 03:45 (+12:45 -> +13:45) on Sep 27
    ("Pacific/Chatham", "0 3 * * *", (YEAR, 9, 26),
     [(YEAR, 9, 25, 14, 15), (YEAR, 9, 26, 14, 0), (YEAR, 9, 27, 13, 15)]),
    # Santiago springs at midnight (00:00 -> 01:00 on Sep 6): the 00:30 run is not lost
    # (APScheduler skipped that day), it runs at 01:00 -03
    ("America/Santiago", "30 0 * * *", (YEAR, 9, 5),
     [(YEAR, 9, 5, 4, 30), (YEAR, 9, 6, 4, 0), (YEAR, 9, 7, 3, 30)]),
    # ... and falls back 24:00 -> 23:00 on Apr 4/5: 23:30 runs once, at -03
    ("America/Santiago", "30 23 * * *", (YEAR, 4, 4),
     [(YEAR, 4, 5, 2, 30), (YEAR, 4, 6, 3, 30), (YEAR, 4, 7, 3, 30)]),
])
def test_known_dst_days(zone, rule, since, expected):
    since_ts = dt.datetime(*since, tzinfo=ZoneInfo(zone)).timestamp()
    got = simulate("cron", rule, zone, since_ts, since_ts + 4 * 86400)
    assert got[:3] == [utc(*e) for e in expected]


# -- every zone, both changes, derived from the zone's offsets -----------------------------
DST_ZONES = [z for z in ZONES if transitions(z)]


def test_the_suite_covers_both_hemispheres_and_odd_offsets():
    assert len(ZONES) >= 10
    assert {"Australia/Lord_Howe", "Pacific/Chatham", "America/Santiago",
            "Australia/Sydney", "Australia/Adelaide"} <= set(DST_ZONES)
    for zone in DST_ZONES:
        changes = transitions(zone)
        assert len(changes) == 2, (zone, changes)
        assert {new > old for _, old, new in changes} == {True, False}


def cases() -> list[tuple[str, float, int, int]]:
    return [(z, *c) for z in DST_ZONES for c in transitions(z)]


@pytest.mark.parametrize(("zone", "at", "old", "new"), cases(),
                         ids=[f"{z}-{'spring' if n > o else 'fall'}"
                              for z, _, o, n in cases()])
def test_fixed_time_job_runs_once_per_local_day(zone, at, old, new):
    """A daily job at a local time inside the gap / the repeated window."""
    shift = abs(new - old)
    edge = local(at - 1, zone) + dt.timedelta(seconds=1)  # the wall time the change is at
    if new > old:  # spring forward: [edge, edge + shift) does not exist
        target = edge + dt.timedelta(seconds=shift // 2)
    else:  # fall back: [edge - shift, edge) happens twice
        target = edge - dt.timedelta(seconds=shift // 2)
    rule = f"{target.minute} {target.hour} * * *"
    got = simulate("cron", rule, zone, *daily_window(at))
    days = [local(t, zone).date() for t in got]
    assert len(got) >= 5
    assert days == [days[0] + dt.timedelta(days=k) for k in range(len(days))], \
        "one run per local day"
    on_the_day = [t for t in got if local(t, zone).date() == target.date()]
    assert len(on_the_day) == 1
    if new > old:
        assert on_the_day[0] == at, "the first valid instant: the moment of the change"
    else:
        assert on_the_day[0] == at - shift // 2, "the first occurrence"
        assert local(on_the_day[0], zone) == target
    for t in got:
        if local(t, zone).date() != target.date():
            assert local(t, zone).time() == target.time()


@pytest.mark.parametrize(("zone", "at", "old", "new"), cases(),
                         ids=[f"{z}-{'spring' if n > o else 'fall'}"
                              for z, _, o, n in cases()])
def test_wildcard_job_follows_absolute_time(zone, at, old, new):
    """``*/15 * * * *``: every existing local quarter hour, both passes of a repeated one."""
    since, until = at - 3 * 3600, at + 3 * 3600
    got = simulate("cron", "*/15 * * * *", zone, since, until)
    expected = [float(t) for t in range(int(since), int(until) + 1, 60)
                if local(t, zone).minute % 15 == 0]
    assert got == expected
    if new < old:  # the repeated quarter hours run twice: each pass is real time
        assert len(got) == (until - since) // 900 + 1
        assert len({local(t, zone) for t in got}) < len(got)


@pytest.mark.parametrize("zone", DST_ZONES)
def test_intervals_are_absolute_time(zone):
    changes = transitions(zone)
    for at, old, new in changes:
        since = at - 2 * 86400 + 123
        got = simulate("interval", "1h", zone, since, at + 2 * 86400)
        assert {b - a for a, b in itertools.pairwise(got)} == {3600.0}
        assert got[0] == round(since + 3600, 3)
        daily = simulate("interval", "1d", zone, since, at + 3 * 86400)
        assert {b - a for a, b in itertools.pairwise(daily)} == {86400.0}
        before, after = local(daily[0], zone), local(daily[-1], zone)
        moved = (after - before) - dt.timedelta(days=len(daily) - 1)
        assert moved == dt.timedelta(seconds=new - old), "local time moves by the change"


@pytest.mark.parametrize(("zone", "at", "old", "new"), cases(),
                         ids=[f"{z}-{'spring' if n > o else 'fall'}"
                              for z, _, o, n in cases()])
def test_date_jobs(zone, at, old, new):
    shift = abs(new - old)
    edge = local(at - 1, zone) + dt.timedelta(seconds=1)
    if new > old:
        target, expected = edge + dt.timedelta(seconds=shift // 2), at
    else:
        target, expected = edge - dt.timedelta(seconds=shift // 2), at - shift // 2
    rule = target.strftime("%Y-%m-%d %H:%M:%S")
    assert simulate("date", rule, zone, at - 86400, at + 86400) == [expected]
    if new < old:  # an offset picks the second occurrence
        second = dt.datetime.fromtimestamp(at + shift // 2, ZoneInfo(zone))
        exact = second.strftime("%Y-%m-%d %H:%M:%S%z")
        assert simulate("date", exact, zone, at - 86400, at + 86400) == [at + shift // 2]


def test_date_now_in_the_repeated_hour_keeps_its_instant():
    zone = "Europe/London"
    tz = rules.get_timezone(zone)
    second_pass = utc(YEAR, 10, 25, 1, 20)  # 01:20 GMT, after 01:20 BST
    stored = rules.normalize_rule("date", "now", tz, second_pass)
    assert stored.endswith("+0000")
    trig = rules.build_trigger("date", stored, tz, second_pass)
    assert rules.first_fire(trig, tz, second_pass - 10) == second_pass
    first_pass = second_pass - 3600
    assert "+" not in rules.normalize_rule("date", "now", tz, first_pass)


def test_check_rule_lists_the_dst_resolved_times():
    out = jobs.check_rule("cron", "30 2 * * *", "America/New_York", 3,
                          now=utc(YEAR, 3, 7, 12))
    assert out["next_fire_times"] == [
        jobs.format_ts(utc(YEAR, 3, 8, 7, 0)), jobs.format_ts(utc(YEAR, 3, 9, 6, 30)),
        jobs.format_ts(utc(YEAR, 3, 10, 6, 30))]


# -- end to end: an engine with a simulated clock, its history rows ------------------------
def recorded(job_id: str) -> list[float]:
    with db.database.connection_context():
        rows = (History.select().where(History.job_id == job_id)
                .order_by(History.scheduled_time))
        return [r.scheduled_time for r in rows if r.status == "ok"]


@pytest.mark.parametrize(("zone", "month"), [("America/New_York", 3),
                                             ("America/New_York", 11),
                                             ("Australia/Lord_Howe", 10),
                                             ("America/Santiago", 4)])
def test_engine_records_the_dst_fire_times(env, engines, callee, zone, month):
    """Three jobs driven through two DST days by an engine whose clock jumps from each
    run time to the next: the history holds the times the rules above give, once each."""
    at, old, new = next(c for c in transitions(zone) if local(c[0], zone).month == month)
    shift = abs(new - old)
    edge = local(at - 1, zone) + dt.timedelta(seconds=1)
    target = edge + dt.timedelta(seconds=shift // 2) if new > old else \
        edge - dt.timedelta(seconds=shift // 2)
    start = at - 86400 - 1800
    clock = SimClock(start)
    specs = {"fixed": ("cron", f"{target.minute} {target.hour} * * *"),
             "wild": ("cron", "0 */4 * * *"), "every": ("interval", "7h")}
    for job_id, (trigger, rule) in specs.items():
        jobs.add_job(trigger, job_id, "tz", f"{callee.url}/{job_id}", rule,
                     jobs.Options(timezone=zone), now=start)
    (engine,) = engines.start(1, clock=clock)
    until = at + 86400 + 1800
    expected = {j: simulate(t, r, zone, start, until) for j, (t, r) in specs.items()}
    total = sum(len(v) for v in expected.values())
    for t in sorted(set(itertools.chain.from_iterable(expected.values()))):
        clock.t = t + 0.01
        want = sum(1 for v in expected.values() for x in v if x <= t)
        engine.tick()
        wait_until(lambda w=want: sum(len(recorded(j)) for j in specs) >= w, timeout=10,
                   what=f"the fires up to {local(t, zone)}")
    clock.t = until
    engine.tick()
    engines.stop_all()
    assert {j: recorded(j) for j in specs} == expected
    assert sum(len(v) for v in expected.values()) == total
    assert len(expected["fixed"]) == 3 and len(expected["wild"]) >= 12
    # the DST day's run, derived from the offsets alone: the change / the first occurrence
    assert expected["fixed"][1] == (at if new > old else at - shift // 2)
    assert {b - a for a, b in itertools.pairwise(expected["every"])} == {7 * 3600.0}
