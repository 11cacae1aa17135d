"""Catch-up window and backfill (issue 25, part 2).

Catch-up: the engines start (the fleet was down) or a job resumes on a simulated clock far
past the job's cursor; run times within the window run once each, in order, under the
job's overlap policy, older ones get a ``missed`` row with the reason. Backfill: the
``backfill_job`` route queues the slots of a past range; each runs once with its own
scheduled time and fire key, and a second backfill of the same range runs nothing.
"""

from __future__ import annotations

import datetime as dt
import time

import pytest
from ruqi_sim import SimClock, rows
from test_ruqi_api import AUTH, make_client

from butterfly_common import Refusal, db, runtime
from butterfly_common.redis_client import make_redis
from butterfly_common.testing import wait_until
from butterfly_ruqi import engine as engine_module
from butterfly_ruqi import jobs, rules
from butterfly_ruqi.claims import BACKFILL_KEY, fire_key
from butterfly_ruqi.models import Job
from butterfly_ruqi.schedule import MAX_MISSED_ROWS

T0 = dt.datetime(2026, 6, 1, 12, 0, 0, tzinfo=dt.UTC).timestamp()


def settled(job_id: str, count: int) -> bool:
    got = rows(job_id)
    return len(got) >= count and all(r.status != "buffered" for r in got)


def utc_text(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%S+0000")


def add(job_id: str, cmd: str, rule: str, now: float, trigger: str = "interval",
        **opts) -> None:
    jobs.add_job(trigger, job_id, "t", cmd, rule, jobs.Options(timezone="UTC", **opts),
                 now=now)


# -- catch-up after the fleet was down -------------------------------------------------
def test_fleet_down_runs_the_window_in_order_and_records_older_fires_missed(
        env, engines, callee):
    # every job saved at T0, its interval counted from T0; no engine until T0 + 200
    add("cu1", f"{callee.url}/cu1?sleep=0.2", "10s", T0, misfire_grace_time=5,
        catchup_window=60, overlap="buffer_all")
    add("cu0", f"{callee.url}/cu0", "10s", T0, misfire_grace_time=5)  # default: the grace
    add("cu2", f"{callee.url}/cu2", "1s", T0, misfire_grace_time=5)
    clock = SimClock(T0 + 200.5)
    engines.start(2, clock=clock)
    wait_until(lambda: settled("cu1", 20) and settled("cu0", 20)
               and settled("cu2", MAX_MISSED_ROWS + 1 + 5), timeout=30,
               what="every fire of the outage recorded")
    engines.stop_all()

    # catchup_window=60: the six run times of the last 60 s ran, once each, in order,
    # behind each other (buffer_all); the 14 before are recorded missed with the reason
    cu1 = rows("cu1")
    assert [r.scheduled_time for r in cu1] == [T0 + 10 * k for k in range(1, 21)]
    assert [r.status for r in cu1] == ["missed"] * 14 + ["ok"] * 6
    assert all("catch-up window 60s" in r.cmd_output for r in cu1[:14])
    assert all("engines were down or the job paused" in r.cmd_output for r in cu1[:14])
    calls = sorted(callee.of("cu1"), key=lambda c: c["at"])
    assert [c["ms"] for c in calls] == [round((T0 + 10 * k) * 1000) for k in range(15, 21)]

    # default (catchup_window=0): the window is the misfire grace, as before the option
    cu0 = rows("cu0")
    assert [r.status for r in cu0] == ["missed"] * 19 + ["ok"]
    assert "catch-up window 5s" in cu0[0].cmd_output
    assert [c["ms"] for c in callee.of("cu0")] == [round((T0 + 200) * 1000)]

    # a long outage: the first MAX_MISSED_ROWS one by one, the rest as one row
    cu2 = rows("cu2")
    assert [r.scheduled_time for r in cu2] == [
        *(T0 + k for k in range(1, MAX_MISSED_ROWS + 2)), *(T0 + k for k in range(196, 201))]
    assert [r.status for r in cu2] == ["missed"] * (MAX_MISSED_ROWS + 1) + ["ok"] * 5
    assert "every later one before" in cu2[MAX_MISSED_ROWS].cmd_output
    assert sorted(c["ms"] for c in callee.of("cu2")) == [
        round((T0 + k) * 1000) for k in range(196, 201)]


def test_a_second_engine_start_runs_nothing_twice(sqlite_env, engines, callee):
    """The cursor lags (written every few seconds): a restart within the window finds the
    done markers, kept for the window, and runs no fire again."""
    add("cu3", f"{callee.url}/cu3", "10s", T0, misfire_grace_time=5, catchup_window=120)
    clock = SimClock(T0 + 100.5)
    engines.start(1, clock=clock)
    wait_until(lambda: settled("cu3", 10), timeout=20)
    engines.stop_all()
    first = sorted(c["ms"] for c in callee.of("cu3"))
    assert len(first) == 10
    # done markers live as long as the window (not just the grace)
    assert runtime.get_redis().pttl(fire_key("cu3", round((T0 + 10) * 1000))) > 100_000
    with db.database.connection_context():  # the cursor as a crash could have left it
        Job.update(next_run_time=T0 + 10).where(Job.id == "cu3").execute()
    engines.start(1, clock=clock)  # the same instant: every fire is within the window
    time.sleep(1.0)  # a restart that would run again does so at once
    engines.stop_all()
    assert sorted(c["ms"] for c in callee.of("cu3")) == first
    assert len(rows("cu3")) == 10


def test_resume_catches_up_the_pause_within_the_window(env, engines, callee):
    add("pz1", f"{callee.url}/pz1", "10s", T0, misfire_grace_time=5, catchup_window=30)
    add("pz0", f"{callee.url}/pz0", "10s", T0, misfire_grace_time=5)
    for job_id in ("pz1", "pz0"):
        jobs.pause_job(job_id, note="maintenance", by="test", now=T0 + 45)
        jobs.resume_job(job_id, now=T0 + 200)
    clock = SimClock(T0 + 200.5)
    engines.start(1, clock=clock)
    wait_until(lambda: settled("pz1", 16), timeout=20)
    pz1 = rows("pz1")
    # paused at +45: the run times +50..+200; within 30 s of +200.5: +180, +190, +200
    assert [r.scheduled_time for r in pz1] == [T0 + 10 * k for k in range(5, 21)]
    assert [r.status for r in pz1] == ["missed"] * 13 + ["ok"] * 3
    assert sorted(c["ms"] for c in callee.of("pz1")) == [
        round((T0 + t) * 1000) for t in (180, 190, 200)]
    # without a catch-up window resume starts from now, as it always did
    assert jobs.get_job("pz0", now=T0 + 200)["next_run_time"] == jobs.format_ts(T0 + 210)
    assert rows("pz0") == []


@pytest.mark.parametrize("value", [-1, 7 * 86400 + 1])
def test_a_bad_catchup_window_is_refused(sqlite_env, value):
    with pytest.raises(Refusal) as err:
        add("bad", "http://127.0.0.1:9/x", "10s", T0, catchup_window=value)
    assert err.value.stat == "ERR_BAD_JOB"


def test_catchup_window_is_stored_kept_and_shown(sqlite_env):
    add("cw", "http://127.0.0.1:9/x", "10s", T0, catchup_window=3600)
    assert jobs.get_job("cw", now=T0)["catchup_window"] == 3600
    kept = jobs.modify_job("interval", "cw", "t", "http://127.0.0.1:9/x", "20s",
                           jobs.Options(), now=T0)
    assert kept["catchup_window"] == 3600


# -- backfill ----------------------------------------------------------------------------
@pytest.fixture
def client(redis_server, db_url):
    make_redis(redis_server.url).flushall()
    yield make_client(redis_server.url, db_url)
    db.database.close()


def backfill(client, **data):
    resp = client.post("/ruqi/backfill_job", headers=AUTH, json=data)
    return resp.status_code, resp.get_json()


def test_backfill_runs_each_slot_once_and_a_second_backfill_runs_nothing(
        client, engines, callee):
    now = time.time()
    body = client.post("/ruqi/add_job", headers=AUTH, json={
        "job_trigger": "cron", "job_id": "bf1", "job_name": "n", "rule": "0 * * * * *",
        "cmd": f"{callee.url}/bf1", "timezone": "UTC", "jitter": 20}).get_json()
    assert body["stat"] == "OK", body
    end = (now // 60 - 1) * 60
    start = end - 29 * 60
    expected = [round(t + rules.jitter_delay("bf1", t, 20), 3)
                for t in (start + 60 * k for k in range(30))]
    assert any(t % 60 > 0.5 for t in expected), "some slot is really jittered"

    # the preview: every slot with its jitter, nothing run
    code, body = backfill(client, job_id="bf1", start=utc_text(start), end=utc_text(end),
                          dry_run=True)
    assert code == 200, body
    data = body["data"]
    assert (data["slots"], data["to_run"], data["already_run"]) == (30, 30, 0)
    assert data["slot_times"] == [jobs.format_ts(t) for t in expected]
    assert runtime.get_redis().llen(BACKFILL_KEY) == 0

    # twice before any engine runs: both are queued, each slot still runs once
    for _ in range(2):
        code, body = backfill(client, job_id="bf1", start=utc_text(start), end=utc_text(end))
        assert code == 200 and body["data"]["to_run"] == 30, body
    engines.start(2)
    wait_until(lambda: len([r for r in rows("bf1") if r.cmd_output.startswith("[backfill]")])
               >= 30, timeout=20, what="the backfilled fires")
    wait_until(lambda: runtime.get_redis().llen(BACKFILL_KEY) == 0, timeout=5)
    time.sleep(1.0)  # a second run of a slot would come now
    done = [r for r in rows("bf1") if r.cmd_output.startswith("[backfill]")]
    assert [r.scheduled_time for r in done] == expected
    assert all(r.status == "ok" and r.manual is False for r in done)
    backfilled = sorted(c["ms"] for c in callee.of("bf1") if c["ms"] / 1000 <= end + 60)
    assert backfilled == [round(t * 1000) for t in expected]

    # a third call, later: every slot has its row, nothing is queued or run
    code, body = backfill(client, job_id="bf1", start=utc_text(start), end=utc_text(end))
    assert (body["data"]["to_run"], body["data"]["already_run"]) == (0, 30)
    assert runtime.get_redis().llen(BACKFILL_KEY) == 0
    code, body = backfill(client, job_id="bf1", start=utc_text(start), end=utc_text(end),
                          dry_run=True)
    assert len(body["data"]["already_run_times"]) == 30


def test_backfill_under_an_overlap_policy(client, engines, callee, monkeypatch):
    # claimed two at a time: the later claim rounds join the job's chain, still in order
    monkeypatch.setattr(engine_module, "BACKFILL_CLAIM_CHUNK", 2)
    now = time.time()
    for job_id in ("bo1", "bo2"):
        body = client.post("/ruqi/add_job", headers=AUTH, json={
            "job_trigger": "interval", "job_id": job_id, "job_name": "n", "rule": "1h",
            "cmd": f"{callee.url}/{job_id}?sleep=0.3"}).get_json()
        assert body["stat"] == "OK", body
    start, end = now - 5 * 3600 - 1, now - 1
    code, body = backfill(client, job_id="bo1", start=utc_text(start), end=utc_text(end),
                          overlap="buffer_all")
    assert code == 200 and body["data"]["to_run"] == 5, body
    code, body = backfill(client, job_id="bo2", start=utc_text(start), end=utc_text(end),
                          overlap="skip")
    assert code == 200 and body["data"]["to_run"] == 5, body
    engines.start(1)
    wait_until(lambda: settled("bo1", 5) and settled("bo2", 5), timeout=20)
    # buffer_all: one after the other, in order of their scheduled times
    calls = sorted(callee.of("bo1"), key=lambda c: c["at"])
    assert [c["ms"] for c in calls] == sorted(c["ms"] for c in calls) and len(calls) == 5
    assert all(r.status == "ok" for r in rows("bo1"))
    # skip: the first runs, the others find it running
    assert [r.status for r in rows("bo2")] == ["ok"] + ["skipped"] * 4
    assert all(r.cmd_output.startswith("[backfill] skipped: overlap")
               for r in rows("bo2")[1:])
    assert len(callee.of("bo2")) == 1


def test_backfill_refusals(client):
    body = client.post("/ruqi/add_job", headers=AUTH, json={
        "job_trigger": "interval", "job_id": "br", "job_name": "n", "rule": "1s",
        "cmd": "http://127.0.0.1:9/x"}).get_json()
    assert body["stat"] == "OK", body
    now = time.time()
    cases = [
        ({"start": utc_text(now - 3 * 3600), "end": utc_text(now - 60)}, 400,
         "ERR_BAD_JOB"),  # 10,740 slots: more than the limit
        ({"start": utc_text(now - 60), "end": utc_text(now + 3600)}, 400, "ERR_BAD_JOB"),
        ({"start": utc_text(now - 60), "end": utc_text(now - 120)}, 400, "ERR_BAD_JOB"),
        ({"start": "yesterday", "end": utc_text(now - 60)}, 400, "ERR_BAD_JOB"),
        ({"start": utc_text(now - 60), "end": utc_text(now - 1), "overlap": "terminate"},
         400, "ERR_BAD_JOB"),
        ({"start": utc_text(now - 60), "end": utc_text(now - 1), "dry_run": "maybe"}, 400,
         "ERR_BAD_PARAMS"),
        ({"job_id": "nope", "start": utc_text(now - 60), "end": utc_text(now - 1)}, 404,
         "ERR_JOB_NOT_FOUND"),
    ]
    for params, status, stat in cases:
        code, body = backfill(client, **{"job_id": "br", **params})
        assert (code, body["stat"]) == (status, stat), (params, body)
    code, body = backfill(client, job_id="br", start=utc_text(now - 3600),
                          end=utc_text(now - 1), dry_run=True)
    assert code == 200 and body["data"]["slots"] <= jobs.MAX_BACKFILL_SLOTS
    resp = client.post("/ruqi/backfill_job", json={"job_id": "br", "start": utc_text(now - 60),
                                                   "end": utc_text(now - 1)})
    assert resp.status_code == 401
    assert runtime.get_redis().llen(BACKFILL_KEY) == 0


def test_backfill_of_a_topic_job_publishes_one_message_per_slot(client, engines):
    from butterfly_common.mq import Broker

    broker = Broker(runtime.get_redis())
    broker.heartbeat("fake-consumer", ["/demo_api/hello"])
    for job_id in ("bt1", "bt2"):
        body = client.post("/ruqi/add_job", headers=AUTH, json={
            "job_trigger": "interval", "job_id": job_id, "job_name": "n", "rule": "1m",
            "cmd": '/demo_api/hello#{"str_info": "tick"}' if job_id == "bt1"
            else "/nobody/listens"}).get_json()
        assert body["stat"] == "OK", body
    now = time.time()
    start, end = utc_text(now - 3 * 3600), utc_text(now - 1)
    engines.start(1)
    for job_id in ("bt1", "bt2"):
        code, body = backfill(client, job_id=job_id, start=start, end=end)
        assert code == 200 and body["data"]["to_run"] == 180, body
    wait_until(lambda: len(rows("bt1")) >= 180 and len(rows("bt2")) >= 180, timeout=20)
    bt1 = rows("bt1")
    assert all(r.status == "ok" for r in bt1)
    assert [r.cmd_output for r in bt1] == [
        f"[backfill] msg_id=ruqi:bt1:{round(r.scheduled_time * 1000)}" for r in bt1]
    assert broker.counts("/demo_api/hello")["queued"] == 180
    msg = broker.get(f"ruqi:bt1:{round(bt1[0].scheduled_time * 1000)}")
    assert msg.data == {"str_info": "tick"} and msg.reqid == bt1[0].reqid
    # no consumer: every slot is recorded failed, with the reason
    assert all(r.status == "failed" and "no live consumer" in r.cmd_output for r in rows("bt2"))
    code, body = backfill(client, job_id="bt1", start=start, end=end)
    assert (body["data"]["to_run"], body["data"]["already_run"]) == (0, 180)
    time.sleep(0.5)
    assert broker.counts("/demo_api/hello")["queued"] == 180 and len(rows("bt1")) == 180
