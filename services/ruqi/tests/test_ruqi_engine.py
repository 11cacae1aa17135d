"""The engine: several engines in one process share a real redis-server and one DB.

Each engine is a full replica (own owner id, heartbeat, threads, claims), so what holds for
them here holds for processes; the multi-process SIGKILL test lives with the integration
tests.
"""

from __future__ import annotations

import itertools
import time
from collections import Counter

from ruqi_crash import crash

from butterfly_common import db, runtime
from butterfly_common.testing import wait_until
from butterfly_ruqi import jobs
from butterfly_ruqi.claims import fire_key
from butterfly_ruqi.models import History, Job


def history(job_id: str | None = None) -> list[History]:
    with db.database.connection_context():
        query = History.select().order_by(History.scheduled_time)
        if job_id:
            query = query.where(History.job_id == job_id)
        return list(query)


def next_run(job_id: str) -> float:
    with db.database.connection_context():
        return Job.get_by_id(job_id).next_run_time


def assert_once_without_gaps(ms_values: list[int], step: int = 1000) -> None:
    dupes = [ms for ms, n in Counter(ms_values).items() if n > 1]
    assert not dupes, f"fired twice: {dupes}"
    ordered = sorted(ms_values)
    gaps = [(a, b) for a, b in itertools.pairwise(ordered) if b - a != step]
    assert not gaps, f"missing fires between {gaps}"


def test_every_fire_runs_exactly_once_across_three_engines(env, engines, callee, add):
    names = [f"j{i}" for i in range(20)]
    for name in names:
        add(name, f"{callee.url}/tick")
    group = engines.start(3)
    wait_until(lambda: all(len(callee.of(n)) >= 4 for n in names), timeout=15,
               what="4 fires of every job")
    engines.stop_all()
    for name in names:
        assert_once_without_gaps([c["ms"] for c in callee.of(name)])
    rows = history()
    keys = Counter((r.job_id, round(r.scheduled_time * 1000)) for r in rows)
    assert keys == Counter((c["job"], c["ms"]) for c in callee.calls)
    assert {r.status for r in rows} == {"ok"}
    assert sum(e.stats["claimed"] for e in group) == len(rows)
    assert len({r.scheduler_name for r in rows}) >= 2, "one engine did all the work"
    late = sorted(c["at"] - c["ms"] / 1000 for c in callee.calls)
    assert late[int(len(late) * 0.99) - 1] < 0.5, f"p99 lateness {late[-5:]}"


def test_a_crashed_engine_loses_no_fire_and_doubles_none(sqlite_env, engines, callee, add):
    names = [f"c{i}" for i in range(10)]
    for name in names:
        add(name, f"{callee.url}/slow?sleep=0.4")
    group = engines.start(3)
    wait_until(lambda: all(len(callee.of(n)) >= 2 for n in names), timeout=10)
    # crash mid-fire: an engine with a fire in flight (each owns a random share of the
    # jobs, and one in ~60 runs a given engine owns none of the ten)
    victim = wait_until(lambda: next((e for e in group if e.status()["fires_running"] > 0),
                                     None), timeout=5, what="a fire in flight")
    crash(victim)
    crashed_at = time.time()
    wait_until(lambda: all(any(c["ms"] / 1000 > crashed_at + 3 for c in callee.of(n))
                           for n in names), timeout=15, what="fires after the crash")
    engines.stop_all()
    for name in names:
        assert_once_without_gaps([c["ms"] for c in callee.of(name)])
    rows = history()
    keys = Counter((r.job_id, round(r.scheduled_time * 1000)) for r in rows)
    assert max(keys.values()) == 1, "a fire recorded twice"
    assert set(keys) == {(c["job"], c["ms"]) for c in callee.calls}
    assert {r.status for r in rows} <= {"ok", "lost"}
    survivors = [e for e in group if e is not victim]
    assert sum(e.watcher.recorded_lost + e.watcher.taken_over for e in survivors) >= 1


def _preclaim(job_id: str, value: str) -> int:
    ms = round(next_run(job_id) * 1000)
    runtime.get_redis().set(fire_key(job_id, ms), value, px=60_000)
    return ms


def test_claimed_fire_of_a_dead_engine_is_taken_over(sqlite_env, engines, callee, add):
    add("t1", f"{callee.url}/t")
    ms = _preclaim("t1", "c|ghost-engine")
    (engine,) = engines.start(1)
    wait_until(lambda: any(c["ms"] == ms for c in callee.of("t1")), timeout=10)
    wait_until(lambda: any(round(r.scheduled_time * 1000) == ms for r in history("t1")))
    row = next(r for r in history("t1") if round(r.scheduled_time * 1000) == ms)
    assert row.status == "ok" and row.scheduler_name == engine.owner
    assert engine.watcher.taken_over == 1


def test_running_fire_of_a_dead_engine_is_recorded_lost_not_rerun(sqlite_env, engines,
                                                                   callee, add):
    add("t2", f"{callee.url}/t")
    ms = _preclaim("t2", "r|ghost-engine")
    engines.start(1)
    wait_until(lambda: any(round(r.scheduled_time * 1000) == ms for r in history("t2")),
               timeout=10)
    wait_until(lambda: any(c["ms"] > ms for c in callee.of("t2")), timeout=5)
    assert ms not in [c["ms"] for c in callee.of("t2")]
    row = next(r for r in history("t2") if round(r.scheduled_time * 1000) == ms)
    assert row.status == "lost" and not row.cmd_is_success


def test_claimed_fire_of_a_live_engine_is_left_alone(sqlite_env, engines, callee, add):
    add("t3", f"{callee.url}/t")
    runtime.get_redis().set("ruqi:node:busy-engine", "1", px=60_000)
    ms = _preclaim("t3", "r|busy-engine")
    (engine,) = engines.start(1)
    wait_until(lambda: any(c["ms"] > ms + 1000 for c in callee.of("t3")), timeout=10)
    assert ms not in [c["ms"] for c in callee.of("t3")]
    assert engine.watcher.taken_over == engine.watcher.recorded_lost == 0


def test_edits_propagate_to_every_engine_within_a_second(env, engines, callee, add):
    group = engines.start(2)
    t0 = time.time()
    add("p1", f"{callee.url}/a")
    wait_until(lambda: all(e.status()["jobs_scheduled"] == 1 for e in group), timeout=1)
    assert time.time() - t0 < 1.0
    wait_until(lambda: len(callee.of("p1")) >= 2, timeout=5)

    t0 = time.time()
    jobs.pause_job("p1")
    wait_until(lambda: all(e.status()["jobs_scheduled"] == 0 for e in group), timeout=1)
    paused_at = time.time()
    assert paused_at - t0 < 1.0
    assert jobs.get_job("p1")["next_run_time"] is None

    jobs.resume_job("p1")
    wait_until(lambda: any(c["at"] > paused_at for c in callee.of("p1")), timeout=5)

    t0 = time.time()
    modified = jobs.modify_job("interval", "p1", "test", f"{callee.url}/b", "2s",
                               jobs.Options())
    first = round(next_run("p1") * 1000)
    assert modified["rule"] == "2s"
    wait_until(lambda: [c for c in callee.calls if c["path"] == "/b"], timeout=5)
    b_calls = [c["ms"] for c in callee.calls if c["path"] == "/b"]
    assert b_calls == [first]
    assert round(next_run("p1") * 1000) in (first, first + 2000)
    assert not [c for c in callee.of("p1") if c["path"] == "/a" and c["at"] > t0 + 1.0]

    jobs.remove_job("p1")
    wait_until(lambda: all(e.status()["jobs_scheduled"] == 0 for e in group), timeout=1)


def test_overlap_forbid_holds_across_engines(sqlite_env, engines, callee, add):
    add("o1", f"{callee.url}/slow?sleep=1.6", overlap="forbid")
    engines.start(2)
    wait_until(lambda: {"ok", "skipped"} <= {r.status for r in history("o1")}, timeout=10)
    assert callee.max_active == 1
    skipped = next(r for r in history("o1") if r.status == "skipped")
    assert "overlap" in skipped.cmd_output


def test_overlap_allow_runs_side_by_side(sqlite_env, engines, callee, add):
    add("o2", f"{callee.url}/slow?sleep=1.6", overlap="allow")
    engines.start(2)
    wait_until(lambda: callee.max_active >= 2, timeout=10)


def _rewind(job_id: str, seconds: float) -> float:
    """Pretend the whole cluster was down: move the job's start and cursor into the past."""
    start = time.time() - seconds
    with db.database.connection_context():
        Job.update(start_time=start, next_run_time=start).where(Job.id == job_id).execute()
    return start


def test_misfire_grace_and_coalesce(sqlite_env, engines, callee, add):
    add("m1", f"{callee.url}/m", misfire_grace_time=2, coalesce=False)
    add("m2", f"{callee.url}/m", misfire_grace_time=2, coalesce=True)
    start = _rewind("m1", 5.5)
    start2 = _rewind("m2", 5.5)
    (engine,) = engines.start(1)
    begun = time.time()
    wait_until(lambda: callee.of("m1") and callee.of("m2"), timeout=5)
    wait_until(lambda: len(history("m1")) >= 2 and history("m2"), timeout=5)
    backlog1 = sorted(c["ms"] for c in callee.of("m1") if c["ms"] / 1000 < begun)
    backlog2 = sorted(c["ms"] for c in callee.of("m2") if c["ms"] / 1000 < begun)
    # due: start + 0..5 s; only those within the 2 s grace run; coalesce keeps the latest
    assert backlog1 == [round((start + 4) * 1000), round((start + 5) * 1000)]
    assert backlog2 == [round((start2 + 5) * 1000)]
    assert engine.stats["missed"] >= 2


def test_a_fire_later_than_the_grace_is_recorded_missed(sqlite_env, engines, callee, add):
    add("m3", f"{callee.url}/m", misfire_grace_time=2)
    start = _rewind("m3", 2.8)  # due: -2.8 (past the grace), -1.8, -0.8
    engines.start(1)
    wait_until(lambda: len(history("m3")) >= 3, timeout=5)
    rows = history("m3")[:3]
    assert [r.status for r in rows] == ["missed", "ok", "ok"]
    assert round(rows[0].scheduled_time * 1000) == round(start * 1000)
    assert round(start * 1000) not in [c["ms"] for c in callee.of("m3")]


def test_date_job_runs_once_then_is_removed(env, engines, callee, add):
    engines.start(2)
    add("d1", f"{callee.url}/d", rule="now", trigger="date")
    wait_until(lambda: callee.of("d1"), timeout=5)
    wait_until(lambda: not Job.select().where(Job.id == "d1").exists(), timeout=5)
    wait_until(lambda: len(history("d1")) == 1, timeout=5)
    assert len(callee.of("d1")) == 1


def test_run_job_fires_now_once_with_the_callers_reqid(sqlite_env, engines, callee, add):
    add("r1", f"{callee.url}/r", rule="1h")
    engines.start(2)
    jobs.run_job("r1", "0000000000ABCDEF")
    wait_until(lambda: callee.of("r1"), timeout=5)
    wait_until(lambda: history("r1"), timeout=5)
    assert [c["reqid"] for c in callee.of("r1")] == ["0000000000ABCDEF"]
    (row,) = history("r1")
    assert row.manual and row.reqid == "0000000000ABCDEF" and row.status == "ok"


def test_history_reqid_matches_the_callee(sqlite_env, engines, callee, add):
    add("q1", f"{callee.url}/q")
    engines.start(1)
    wait_until(lambda: len(history("q1")) >= 2, timeout=6)
    assert {r.reqid for r in history("q1")} <= {c["reqid"] for c in callee.of("q1")}
