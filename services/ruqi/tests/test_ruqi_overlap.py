"""Overlap policies across replicas: skip, buffer_one, buffer_all, allow (and forbid, the
old name of skip). The state is one Redis hash per job (overlap.lua), so a fire on one
engine and the next on another see the same run and the same buffer."""

from __future__ import annotations

import itertools
import time

import peewee
import pytest
from ruqi_sim import rows

from butterfly_common import Refusal, db, runtime
from butterfly_common.reqid import new_reqid
from butterfly_common.testing import wait_until
from butterfly_ruqi import jobs
from butterfly_ruqi.claims import Claims, fire_key, overlap_key
from butterfly_ruqi.config import BUFFER_ALL_LIMIT
from butterfly_ruqi.models import Job
from butterfly_ruqi.schedule import Fire


def no_overlap(calls: list[dict], run: float) -> None:
    """The callee's calls of one job never ran side by side (each lasts ``run`` s)."""
    starts = sorted(c["at"] for c in calls)
    overlaps = [(a, b) for a, b in itertools.pairwise(starts) if b - a < run - 0.05]
    assert not overlaps, f"runs overlapped: {overlaps}"


def settle(job_id: str) -> None:
    """Pause the job, then wait until its buffer drained and every row has an outcome."""
    jobs.pause_job(job_id, note="test over", by="test")
    claims = Claims(runtime.get_redis(), "probe")
    wait_until(lambda: claims.overlap_state(job_id) == ("", 0), timeout=20,
               what="the buffer drained")
    wait_until(lambda: all(r.status != "buffered" for r in rows(job_id)), timeout=10,
               what="every buffered row replaced by its outcome")


def test_skip_records_the_overlapping_fire(env, engines, callee, add):
    add("s1", f"{callee.url}/slow?sleep=1.6", overlap="skip")
    engines.start(3)
    wait_until(lambda: len([r for r in rows("s1") if r.status == "skipped"]) >= 2
               and len([r for r in rows("s1") if r.status == "ok"]) >= 2, timeout=15)
    settle("s1")
    skipped = [r for r in rows("s1") if r.status == "skipped"]
    assert all(r.cmd_output.startswith("skipped: overlap:") for r in skipped)
    assert all("overlap=skip" in r.cmd_output for r in skipped)
    no_overlap(callee.of("s1"), 1.6)
    assert len({r.scheduler_name for r in rows("s1")}) >= 1


def test_buffer_one_runs_one_waiting_fire_after_the_run(env, engines, callee, add):
    add("b1", f"{callee.url}/slow?sleep=2.2", overlap="buffer_one")
    group = engines.start(3)
    wait_until(lambda: len(callee.of("b1")) >= 3, timeout=20, what="three runs")
    settle("b1")
    history = rows("b1")
    statuses = {r.status for r in history}
    assert statuses <= {"ok", "skipped"}, statuses
    buffered = [r for r in history if r.cmd_output.startswith("[buffered:")]
    full = [r for r in history if r.status == "skipped"]
    assert buffered and full, "a 2.2 s run at 1 s: one fire waits, the next is skipped"
    assert all("the buffer is full" in r.cmd_output for r in full)
    assert all(r.status == "ok" for r in buffered)
    no_overlap(callee.of("b1"), 2.2)
    # every fire the callee saw is one history row, and each ran once
    called = sorted(c["ms"] for c in callee.of("b1"))
    assert called == sorted(set(called))
    assert called == sorted(round(r.scheduled_time * 1000) for r in history
                            if r.status == "ok")
    assert sum(e.stats["claimed"] for e in group) == len(history)


def test_buffer_all_runs_every_fire_in_order(env, engines, callee, add):
    add("a1", f"{callee.url}/slow?sleep=1.5", overlap="buffer_all")
    engines.start(2)
    wait_until(lambda: len(rows("a1")) >= 5, timeout=20, what="five fires")
    settle("a1")
    history = rows("a1")
    assert {r.status for r in history} == {"ok"}, [(r.status, r.cmd_output) for r in history]
    calls = sorted(callee.of("a1"), key=lambda c: c["at"])
    assert [c["ms"] for c in calls] == sorted(c["ms"] for c in calls), "oldest first"
    assert len(calls) == len(history)
    no_overlap(calls, 1.5)
    assert any(r.cmd_output.startswith("[buffered:") for r in history)


def test_the_buffer_is_bounded_and_a_dead_holder_is_replaced(sqlite_env):
    redis = runtime.get_redis()
    a, b = Claims(redis, "engine-a"), Claims(redis, "engine-b")
    a.heartbeat(30)
    b.heartbeat(30)
    assert a.overlap_acquire("j", "engine-a|1000", 60, 2, "x1")[0] == "run"
    assert b.overlap_acquire("j", "engine-b|2000", 60, 2, "x2") == ("buffered", "engine-a|1000")
    assert b.overlap_acquire("j", "engine-b|3000", 60, 2, "x3")[0] == "buffered"
    assert b.overlap_acquire("j", "engine-b|4000", 60, 2, "x4")[0] == "skip"
    assert a.overlap_state("j") == ("engine-a|1000", 2)
    # the holder hands the waiting fires over in order, then the run ends
    assert a.overlap_release("j", "engine-a|1000", 60) == ("next", "x2")
    assert a.overlap_release("j", "engine-a|1000", 60) == ("next", "x3")
    assert a.overlap_release("j", "engine-a|1000", 60) == ("done", "")
    assert redis.exists(overlap_key("j")) == 0
    # a holder without heartbeat is replaced at once; the buffer stays
    c = Claims(redis, "engine-c")  # never beats: dead
    assert c.overlap_acquire("k", "engine-c|1", 60, 1, "")[0] == "run"
    assert a.overlap_acquire("k", "engine-a|2", 60, 1, "y")[0] == "run"
    assert c.overlap_release("k", "engine-c|1", 60) == ("gone", "engine-a|2")
    # a run whose lease ended is replaced too
    assert a.overlap_acquire("l", "engine-a|1", 0.001, 1, "")[0] == "run"
    wait_until(lambda: b.overlap_acquire("l", "engine-b|2", 60, 1, "")[0] == "run",
               timeout=2, what="the lease to end")
    assert BUFFER_ALL_LIMIT == 100


@pytest.mark.parametrize("overlap", ["allow", "skip", "buffer_one", "buffer_all", "cancel_other",
                                     "forbid"])
def test_every_policy_is_stored(env, add, overlap):
    assert add("p", "http://127.0.0.1:9/x", rule="10s", overlap=overlap)["overlap"] == overlap


@pytest.mark.parametrize("overlap", ["sometimes", "BUFFER_ONE", "CANCEL_OTHER", ""])
def test_a_bad_policy_is_refused(sqlite_env, overlap):
    with pytest.raises(Refusal) as err:
        jobs.add_job("interval", "bad", "t", "http://127.0.0.1:9/x", "10s",
                     jobs.Options(overlap=overlap or " "))
    assert err.value.stat == "ERR_BAD_JOB"


def test_an_old_overlap_column_is_widened(redis_server, mariadb_database,
                                          configure_runtime, add):
    """MariaDB only: SQLite does not enforce VARCHAR lengths."""
    from butterfly_ruqi.models import migrate

    runtime_settings = configure_runtime(redis_server.url, str(mariadb_database))
    assert isinstance(db.database.obj, peewee.MySQLDatabase), runtime_settings
    table = Job._meta.table_name
    with db.database.connection_context():
        db.database.execute_sql(f"ALTER TABLE {table} MODIFY overlap VARCHAR(8) NOT NULL")
    with pytest.raises(peewee.DatabaseError):  # what a release before the policies had
        add("w", "http://127.0.0.1:9/x", rule="10s", overlap="buffer_all")
    migrate()
    migrate()
    add("w", "http://127.0.0.1:9/x", rule="10s", overlap="buffer_all")
    assert jobs.get_job("w")["overlap"] == "buffer_all"


def test_a_fire_on_another_replica_waits_for_the_run_and_is_run_by_its_holder(
        env, engines, callee, add):
    """Replica A runs a fire; replica B claims the next one: B buffers it in the shared
    state, and A - ending its run - runs it (history: one row, B's ``buffered`` replaced
    by A's outcome)."""
    add("x1", f"{callee.url}/slow?sleep=1.5", rule="1h", overlap="buffer_one")
    a, b = engines.start(2)
    wait_until(lambda: "x1" in a._specs and "x1" in b._specs, timeout=5)

    def manual(engine, ts: float) -> Fire:
        return Fire(engine._specs["x1"], ts, fire_key("x1", round(ts * 1000), manual=True),
                    new_reqid(), manual=True)

    first = manual(a, round(time.time(), 3))
    a._claim([first])
    wait_until(lambda: callee.active == 1, timeout=5, what="A's run started")
    second = manual(b, first.ts + 0.5)
    b._claim([second])
    wait_until(lambda: any(r.status == "buffered" for r in rows("x1")), timeout=5,
               what="B's fire buffered")
    buffered = next(r for r in rows("x1") if r.status == "buffered")
    assert buffered.scheduler_name == b.owner and buffered.fire_key == second.key
    wait_until(lambda: len(rows("x1")) == 2 and all(r.status == "ok" for r in rows("x1")),
               timeout=10, what="both ran")
    by_key = {r.fire_key: r for r in rows("x1")}
    assert by_key[first.key].scheduler_name == a.owner
    assert by_key[second.key].scheduler_name == a.owner  # the holder ran it
    assert by_key[second.key].cmd_output.startswith("[buffered:")
    assert callee.max_active == 1
    starts = sorted(c["at"] for c in callee.of("x1"))
    assert len(starts) == 2 and starts[1] - starts[0] >= 1.45
