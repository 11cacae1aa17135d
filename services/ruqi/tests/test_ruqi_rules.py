"""Rule parsing: cron with 6 and 5 fields, interval units, date and now, bad input."""

from __future__ import annotations

import datetime as dt

import pytest

from butterfly_common import Refusal
from butterfly_ruqi import rules

UTC = rules.get_timezone("UTC")


def fires(trigger: str, rule: str, start: dt.datetime, count: int = 3) -> list[dt.datetime]:
    trig = rules.build_trigger(trigger, rule, UTC, start.timestamp())
    out, prev = [], None
    now = start
    for _ in range(count):
        nxt = trig.get_next_fire_time(prev, now)
        if nxt is None:
            break
        out.append(nxt.astimezone(dt.UTC).replace(tzinfo=None))
        prev = now = nxt
    return out


START = dt.datetime(2026, 1, 5, 10, 0, 0, tzinfo=dt.UTC)  # a Monday


def test_cron_six_fields_seconds_first():
    assert fires("cron", "*/20 * * * * *", START) == [
        dt.datetime(2026, 1, 5, 10, 0, 0), dt.datetime(2026, 1, 5, 10, 0, 20),
        dt.datetime(2026, 1, 5, 10, 0, 40)]


def test_cron_six_fields_keep_apscheduler_weekdays():
    # The original's 6-field rules use APScheduler's numbering: 0 = Monday.
    assert fires("cron", "0 30 9 * * 0", START, 1) == [dt.datetime(2026, 1, 12, 9, 30)]


def test_cron_five_fields_standard_crontab():
    assert fires("cron", "15 10 * * *", START, 2) == [
        dt.datetime(2026, 1, 5, 10, 15), dt.datetime(2026, 1, 6, 10, 15)]


@pytest.mark.parametrize(("dow", "first"), [
    ("0", dt.datetime(2026, 1, 11, 9, 0)),     # crontab 0 = Sunday
    ("7", dt.datetime(2026, 1, 11, 9, 0)),     # and so is 7
    ("sun", dt.datetime(2026, 1, 11, 9, 0)),
    ("2-3", dt.datetime(2026, 1, 6, 9, 0)),    # Tue-Wed
    ("5-7", dt.datetime(2026, 1, 9, 9, 0)),    # Fri..Sun
    ("*/3", dt.datetime(2026, 1, 7, 9, 0)),    # Sun, Wed, Sat
])
def test_cron_five_fields_weekday_numbers_are_crontab(dow, first):
    assert fires("cron", f"0 9 * * {dow}", START, 1) == [first]


def test_crontab_dow_translation():
    assert rules.crontab_dow("1-5") == "mon,tue,wed,thu,fri"
    assert rules.crontab_dow("0,6") == "sun,sat"
    assert rules.crontab_dow("*") == "*"


@pytest.mark.parametrize(("rule", "seconds"), [("5s", 5), ("2m", 120), ("3h", 10800),
                                               ("1d", 86400), (" 10s ", 10)])
def test_interval_units(rule, seconds):
    assert rules.interval_seconds(rule) == seconds
    # The stored start is the first fire (add_job stores now + interval, as APScheduler).
    got = fires("interval", rule, START, 2)
    assert [g - START.replace(tzinfo=None) for g in got] == [
        dt.timedelta(0), dt.timedelta(seconds=seconds)]


def test_interval_counts_from_the_stored_start_on_every_replica():
    trig = rules.build_trigger("interval", "10s", UTC, 1_000_000.25)
    assert rules.first_fire(trig, UTC, 1_000_033.0) == 1_000_040.25
    assert rules.next_fire(trig, UTC, 1_000_040.25, 1_000_040.3) == 1_000_050.25


def test_date_rules():
    assert fires("date", "2026-02-01 08:30:00", START) == [dt.datetime(2026, 2, 1, 8, 30)]
    assert fires("date", "2026-02-01", START) == [dt.datetime(2026, 2, 1)]
    stored = rules.normalize_rule("date", "now", UTC, START.timestamp())
    assert stored == "2026-01-05 10:00:00.000000"
    assert fires("date", stored, START) == [dt.datetime(2026, 1, 5, 10)]


def test_date_rule_in_job_timezone():
    shanghai = rules.get_timezone("Asia/Shanghai")
    trig = rules.build_trigger("date", "2026-02-01 08:00:00", shanghai, 0)
    assert rules.first_fire(trig, shanghai, 0) == dt.datetime(2026, 2, 1, 0, 0,
                                                              tzinfo=dt.UTC).timestamp()


@pytest.mark.parametrize(("trigger", "rule", "stat"), [
    ("cron", "* * * *", "ERR_BAD_RULE"),
    ("cron", "* * * * * * *", "ERR_BAD_RULE"),
    ("cron", "61 * * * * *", "ERR_BAD_RULE"),
    ("cron", "0 9 * * 8", "ERR_BAD_RULE"),
    ("interval", "10", "ERR_BAD_RULE"),
    ("interval", "0s", "ERR_BAD_RULE"),
    ("interval", "5w", "ERR_BAD_RULE"),
    ("interval", "-5s", "ERR_BAD_RULE"),
    ("date", "tomorrow", "ERR_BAD_RULE"),
    ("date", "2026-13-01 00:00:00", "ERR_BAD_RULE"),
    ("weekly", "1s", "ERR_BAD_TRIGGER"),
])
def test_bad_rules(trigger, rule, stat):
    with pytest.raises(Refusal) as err:
        rules.normalize_rule(trigger, rule, UTC, START.timestamp())
    assert err.value.stat == stat
    assert err.value.reason


def test_bad_timezone():
    with pytest.raises(Refusal) as err:
        rules.get_timezone("Mars/Olympus")
    assert err.value.stat == "ERR_BAD_TIMEZONE"
