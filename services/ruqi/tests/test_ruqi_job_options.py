"""Pause with a note, pause_on_failure, start/end bounds and jitter (issue 25, part 3).

Engines run on a simulated clock where the schedule matters (bounds, jitter): the test
moves the clock from one fire to the next and reads back the history the engines wrote.
"""

from __future__ import annotations

import datetime as dt

import pytest
from ruqi_sim import SimClock, rows

from butterfly_common import Refusal, db, runtime
from butterfly_common.testing import wait_until
from butterfly_ruqi import jobs, rules
from butterfly_ruqi.claims import Claims, failures_key
from butterfly_ruqi.models import Job

T0 = dt.datetime(2026, 6, 1, 12, 0, 0, tzinfo=dt.UTC).timestamp()


def utc_text(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def drive(engines_, clock: SimClock, until: float, count: callable) -> None:
    """Move the clock from fire to fire (the engines' earliest) up to ``until``, waiting
    each time for the history count to grow."""
    while True:
        nxt = min((e.status()["next_wakeup_time"] or float("inf")) for e in engines_)
        if nxt > until:
            return
        before = count()
        clock.t = nxt + 0.01
        for engine in engines_:
            engine.tick()
        wait_until(lambda b=before: count() > b, timeout=10, what=f"the fire at {nxt}")


# -- pause with a note -----------------------------------------------------------------
def test_pause_note_is_stored_shown_and_cleared_on_resume(env, add):
    add("p1", "http://127.0.0.1:9/x", rule="10s")
    jobs.pause_job("p1", note="disk full on db2, see INC-42", by="alice", now=T0)
    job = jobs.get_job("p1")
    assert job["paused"] is True and job["next_run_time"] is None
    assert (job["pause_note"], job["paused_by"]) == ("disk full on db2, see INC-42", "alice")
    assert job["paused_at"] == jobs.format_ts(T0)
    assert job["next_runs"] == []
    listed = jobs.list_jobs(None, None, 1, 10)["list"][0]
    assert (listed["pause_note"], listed["paused_by"]) == ("disk full on db2, see INC-42",
                                                          "alice")
    resumed = jobs.resume_job("p1")
    assert resumed["paused"] is False and resumed["pause_note"] is None
    assert resumed["paused_by"] is None and resumed["paused_at"] is None
    assert resumed["next_run_time"]


@pytest.mark.parametrize("note", ["x" * 501, "bad\x00byte", "bell\x07"])
def test_a_bad_note_is_refused(sqlite_env, add, note):
    add("p2", "http://127.0.0.1:9/x", rule="10s")
    with pytest.raises(Refusal) as err:
        jobs.pause_job("p2", note=note, by="bob")
    assert err.value.stat == "ERR_BAD_JOB"
    assert jobs.get_job("p2")["paused"] is False


# -- pause_on_failure ------------------------------------------------------------------
def test_failure_count_is_shared_and_reset_by_a_success(sqlite_env):
    redis = runtime.get_redis()
    a, b = Claims(redis, "a"), Claims(redis, "b")
    assert [a.count_run("j", True), b.count_run("j", True), a.count_run("j", True)] == [1, 2, 3]
    assert b.count_run("j", False) == 0 and redis.get(failures_key("j")) is None
    assert a.count_run("j", True) == 1
    assert 0 < redis.ttl(failures_key("j")) <= 30 * 86400


def test_n_consecutive_failures_pause_the_job_with_a_note(env, engines, callee, add):
    add("f1", f"{callee.url}/fail?status=500", rule="1s", pause_on_failure=3)
    add("ok1", f"{callee.url}/ok", rule="1s", pause_on_failure=1)
    group = engines.start(2)
    wait_until(lambda: jobs.get_job("f1")["paused"], timeout=15, what="f1 paused")
    job = jobs.get_job("f1")
    assert job["paused_by"] == "ruqi"
    assert "after 3 consecutive failed runs" in job["pause_note"]
    assert "pause_on_failure=3" in job["pause_note"]
    wait_until(lambda: len(rows("f1")) >= 3, timeout=5, what="the history rows")
    failed = [r for r in rows("f1") if r.status == "failed"]
    # the third failure paused it; a fire claimed before the pause reached every
    # replica (~0.3 s) may still have run
    assert 3 <= len(failed) <= 4
    # once every engine dropped the job nothing can fire it: no run was scheduled after
    # the pause, but for one claimed just before it reached every replica
    wait_until(lambda: all("f1" not in e._slots for e in group), timeout=5,
               what="every engine dropped f1")
    with db.database.connection_context():
        paused_at = Job.get_by_id("f1").paused_at
    assert all(c["ms"] / 1000 < paused_at + 1.0 for c in callee.of("f1"))
    assert len(callee.of("f1")) <= 4
    # a job that succeeds is never paused; resume starts the count again
    assert jobs.get_job("ok1")["paused"] is False and len(callee.of("ok1")) >= 2
    assert runtime.get_redis().get(failures_key("f1")) is not None
    jobs.resume_job("f1")
    assert runtime.get_redis().get(failures_key("f1")) is None
    assert jobs.get_job("f1")["pause_note"] is None


def test_an_operator_note_is_not_overwritten_by_pause_on_failure(sqlite_env, add):
    add("f2", "http://127.0.0.1:9/x", rule="10s", pause_on_failure=2)
    jobs.pause_job("f2", note="maintenance", by="carol")
    assert not jobs.pause_job("f2", note="paused by ruqi", by="ruqi", if_running=True)
    assert jobs.get_job("f2")["pause_note"] == "maintenance"


# -- start / end bounds ----------------------------------------------------------------
def test_bounds_limit_the_fires_and_the_job_ends(env, engines, callee):
    clock = SimClock(T0)
    start, end = T0 + 100, T0 + 160
    jobs.add_job("interval", "b1", "t", f"{callee.url}/b1", "20s",
                 jobs.Options(timezone="UTC", start_at=utc_text(start), end_at=utc_text(end)),
                 now=T0)
    jobs.add_job("cron", "b2", "t", f"{callee.url}/b2", "*/30 * * * * *",
                 jobs.Options(timezone="UTC", start_at=utc_text(start + 5),
                              end_at=utc_text(end)), now=T0)
    job = jobs.get_job("b1", now=T0)
    assert (job["start_at"], job["end_at"]) == (utc_text(start) + "+0000",
                                                utc_text(end) + "+0000")
    assert job["next_runs"] == [jobs.format_ts(start + k * 20) for k in range(4)]
    group = engines.start(1, clock=clock)
    drive(group, clock, T0 + 400, lambda: len(rows("b1")) + len(rows("b2")))
    assert [r.scheduled_time for r in rows("b1")] == [start + k * 20 for k in range(4)]
    assert [r.scheduled_time for r in rows("b2")] == [T0 + 120, T0 + 150]
    # no run left: removed, as a date job after its run (the original's rule)
    wait_until(lambda: Job.get_or_none(Job.id == "b1") is None, timeout=5)


@pytest.mark.parametrize(("opts", "stat"), [
    ({"start_at": "tomorrow"}, "ERR_BAD_JOB"),
    ({"end_at": "2026-13-01 00:00:00"}, "ERR_BAD_JOB"),
    ({"start_at": "2026-06-02 00:00:00", "end_at": "2026-06-01 00:00:00"}, "ERR_BAD_JOB"),
    ({"end_at": "2026-05-01 00:00:00"}, "ERR_BAD_RULE"),  # never fires
    ({"jitter": -1}, "ERR_BAD_JOB"),
    ({"jitter": 3601}, "ERR_BAD_JOB"),
    ({"jitter": float("nan")}, "ERR_BAD_JOB"),
    ({"jitter": 20}, "ERR_BAD_JOB"),  # not shorter than the 20 s interval
    ({"pause_on_failure": -1}, "ERR_BAD_JOB"),
    ({"pause_on_failure": 1001}, "ERR_BAD_JOB"),
])
def test_bad_options_are_refused(sqlite_env, opts, stat):
    with pytest.raises(Refusal) as err:
        jobs.add_job("interval", "bad", "t", "http://127.0.0.1:9/x", "20s",
                     jobs.Options(timezone="UTC", **opts), now=T0)
    assert err.value.stat == stat


def test_modify_keeps_or_clears_bounds(sqlite_env):
    jobs.add_job("interval", "m1", "t", "http://127.0.0.1:9/x", "20s",
                 jobs.Options(end_at="2026-07-01 00:00:00", jitter=5), now=T0)
    kept = jobs.modify_job("interval", "m1", "t", "http://127.0.0.1:9/x", "30s",
                           jobs.Options(), now=T0)
    assert kept["end_at"] == "2026-07-01 00:00:00+0000"
    assert kept["jitter"] == 5
    cleared = jobs.modify_job("interval", "m1", "t", "http://127.0.0.1:9/x", "30s",
                              jobs.Options(end_at=""), now=T0)
    assert cleared["end_at"] is None


# -- jitter ----------------------------------------------------------------------------
def test_jitter_is_deterministic_bounded_and_spread():
    delays = [rules.jitter_delay(f"job{i}", T0, 30) for i in range(1000)]
    assert delays == [rules.jitter_delay(f"job{i}", T0, 30) for i in range(1000)]
    assert all(0 <= d <= 30 and d == round(d, 3) for d in delays)
    buckets = {int(d // 3) for d in delays}
    assert len(buckets) >= 10, "1,000 jobs on one instant spread over the whole jitter"
    per_slot = {rules.jitter_delay("job1", T0 + 60 * k, 30) for k in range(50)}
    assert len(per_slot) > 40, "each slot of a job gets its own delay"
    assert rules.jitter_delay("job1", T0, 0) == 0.0


def test_jittered_fires_run_once_at_the_listed_times(env, engines, callee):
    clock = SimClock(T0)
    jobs.add_job("cron", "jt", "t", f"{callee.url}/jt", "0 * * * * *",
                 jobs.Options(timezone="UTC", jitter=30), now=T0)
    expected = [T0 + 60 * k + rules.jitter_delay("jt", T0 + 60 * k, 30) for k in range(5)]
    expected = [round(t, 3) for t in expected]
    assert any(t % 60 > 1 for t in expected), "some fire is really delayed"
    listed = jobs.get_job("jt", now=T0)
    assert listed["next_runs"] == [jobs.format_ts(t) for t in expected]
    assert listed["next_run_time"] == jobs.format_ts(expected[0])
    group = engines.start(2, clock=clock)  # two replicas compute the same times
    drive(group, clock, expected[-1], lambda: len(rows("jt")))
    engines.stop_all()
    assert [r.scheduled_time for r in rows("jt")] == expected
    assert sorted(c["ms"] for c in callee.of("jt")) == [round(t * 1000) for t in expected]


# -- over HTTP, and an older table -------------------------------------------------------
def test_http_options_and_refusals(redis_server, tmp_path):
    from test_ruqi_api import AUTH, make_client

    from butterfly_common.redis_client import make_redis

    make_redis(redis_server.url).flushall()
    client = make_client(redis_server.url, f"sqlite:///{tmp_path / 'o.db'}")
    try:
        body = client.post("/ruqi/add_job", headers=AUTH, json={
            "job_trigger": "interval", "job_id": "h1", "job_name": "n",
            "cmd": "http://127.0.0.1:9/x", "rule": "1h", "jitter": 30,
            "pause_on_failure": 2, "end_at": "2099-01-01 00:00:00"}).get_json()
        assert body["stat"] == "OK", body
        assert (body["data"]["jitter"], body["data"]["pause_on_failure"]) == (30, 2)
        assert body["data"]["end_at"] is not None
        resp = client.post("/ruqi/pause_job", headers=AUTH,
                           json={"job_id": "h1", "note": "upstream down"})
        assert resp.get_json()["stat"] == "OK"
        data = client.get("/ruqi/get_job?job_id=h1").get_json()["data"]
        assert data["pause_note"] == "upstream down" and data["paused_at"]
        assert data["paused_by"] == "operator-token"  # a token has no user name
        listed = client.get("/ruqi/get_jobs").get_json()["data"]["list"][0]
        assert listed["pause_note"] == "upstream down"
        for bad in ({"jitter": "soon"}, {"jitter": 99999}, {"pause_on_failure": -3},
                    {"start_at": "yesterday"}, {"end_at": "x" * 100}):
            resp = client.post("/ruqi/add_job", headers=AUTH, json={
                "job_trigger": "interval", "job_id": "h2", "job_name": "n",
                "cmd": "http://127.0.0.1:9/x", "rule": "1h", **bad})
            assert resp.status_code == 400, (bad, resp.get_json())
            assert resp.get_json()["stat"] in ("ERR_BAD_JOB", "ERR_BAD_PARAMS"), bad
        resp = client.post("/ruqi/pause_job", headers=AUTH,
                           json={"job_id": "h1", "note": "n" * 501})
        assert resp.status_code == 400 and resp.get_json()["stat"] == "ERR_BAD_JOB"
    finally:
        db.database.close()


def test_an_older_jobs_table_is_migrated(env, add):
    from butterfly_ruqi.models import JOB_ADDED, migrate

    table = Job._meta.table_name
    add("before", "http://127.0.0.1:9/x", rule="10s")
    with db.database.connection_context():
        for name in JOB_ADDED:
            db.database.execute_sql(f"ALTER TABLE {table} DROP COLUMN {name}")
    migrate()
    migrate()  # a second replica starting finds it done
    with db.database.connection_context():
        assert set(JOB_ADDED) <= {c.name for c in db.database.get_columns(table)}
    before = jobs.get_job("before")
    assert (before["pause_on_failure"], before["jitter"], before["end_at"]) == (0, 0, None)
    add("old", "http://127.0.0.1:9/x", rule="10s", jitter=2)
    assert jobs.get_job("old")["jitter"] == 2
