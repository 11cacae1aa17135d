"""Job ownership: each live engine claims only the fires of the jobs it owns (rendezvous
hashing over the live engines); a dead engine's jobs move to the survivors; an engine that
falls behind coalesces its backlog into ``missed`` rows instead of running it late.

Engines in this process on a real redis-server, each a full replica (own owner id, heartbeat,
threads). No timing luck: the tests wait on conditions, and the overload is a deterministic
stall (the engine's only worker is held on an event).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter

import pytest
from ruqi_crash import crash

from butterfly_common import db, runtime
from butterfly_common.coordination import owner_of
from butterfly_common.testing import wait_until
from butterfly_ruqi.claims import fire_key
from butterfly_ruqi.engine import Engine
from butterfly_ruqi.models import History
from butterfly_ruqi.schedule import Fire

JOBS = 12


def history(job_id: str | None = None) -> list[History]:
    with db.database.connection_context():
        query = History.select().order_by(History.scheduled_time)
        if job_id:
            query = query.where(History.job_id == job_id)
        return list(query)


def converged(group: list[Engine]) -> bool:
    """Every engine sees exactly the engines of ``group`` as live."""
    owners = sorted(e.owner for e in group)
    return all(e.status()["live_engines"] == owners for e in group)


def counters(group: list[Engine]) -> dict[str, tuple[int, int]]:
    return {e.owner: (e.stats["claimed"], e.stats["lost_claims"]) for e in group}


def test_each_job_is_claimed_by_its_rendezvous_owner_only(sqlite_env, engines, callee, add):
    names = [f"w{i}" for i in range(JOBS)]
    for name in names:
        add(name, f"{callee.url}/tick")
    # a heartbeat that lapses on a loaded machine would (rightly) move jobs for a while
    group = engines.start(3, node_ttl=10.0)
    wait_until(lambda: converged(group), timeout=10, what="every engine sees the 3 engines")
    owners = sorted(e.owner for e in group)
    # one more poll, so no engine is still claiming under an older view
    wait_until(lambda: all(e.status()["check_time"] > max(g.status()["check_time"]
                                                          for g in group) - 0.5
                           for e in group), timeout=5)
    before = counters(group)
    views = [e.stats["views"] for e in group]
    since = max(c["ms"] for c in callee.calls) if callee.calls else 0
    wait_until(lambda: all(len([c for c in callee.of(n) if c["ms"] > since]) >= 3
                           for n in names), timeout=15, what="3 more fires of every job")
    after = counters(group)
    # a heartbeat lapse on a loaded machine moves jobs (rightly): then this proves nothing
    assert views == [e.stats["views"] for e in group], "a view changed; rerun on a quieter box"
    engines.stop_all()

    rows = [r for r in history() if round(r.scheduled_time * 1000) > since]
    assert rows
    wrong = [(r.job_id, r.scheduler_name) for r in rows
             if r.scheduler_name != owner_of(r.job_id, owners)]
    assert not wrong, f"fires run by an engine that does not own the job: {wrong[:5]}"
    # no engine even tried to claim a peer's fire: a try would have been lost (or won)
    assert all(after[o][1] == before[o][1] for o in owners), (before, after)
    claimed = sum(after[o][0] - before[o][0] for o in owners)
    assert claimed >= len(rows) - JOBS  # fires scheduled just before `since` claimed after
    assert {r.status for r in rows} == {"ok"}
    per_engine = Counter(r.scheduler_name for r in rows)
    assert set(per_engine) == {owner_of(n, owners) for n in names}
    # every engine parked the jobs it does not own, without claiming
    assert all(e.stats["parked"] > 0 for e in group if sum(
        owner_of(n, owners) != e.owner for n in names))


def test_a_dead_engines_jobs_move_to_the_survivors_and_fire_exactly_once(
        sqlite_env, engines, callee, add):
    names = [f"k{i}" for i in range(JOBS)]
    for name in names:
        add(name, f"{callee.url}/tick")
    group = engines.start(3, node_ttl=3.0)
    wait_until(lambda: converged(group), timeout=10, what="every engine sees the 3 engines")
    owners = sorted(e.owner for e in group)
    share = Counter(owner_of(n, owners) for n in names)
    victim = next(e for e in group if e.owner == share.most_common(1)[0][0])
    moved = [n for n in names if owner_of(n, owners) == victim.owner]
    assert moved
    wait_until(lambda: all(len(callee.of(n)) >= 2 for n in names), timeout=10)
    crash(victim)
    survivors = [e for e in group if e is not victim]
    wait_until(lambda: converged(survivors), timeout=10, what="the survivors see it gone")
    live = sorted(e.owner for e in survivors)
    views = [e.stats["views"] for e in survivors]
    mark = max(c["ms"] for c in callee.calls)
    wait_until(lambda: all(len([c for c in callee.of(n) if c["ms"] > mark]) >= 2
                           for n in names), timeout=15, what="fires after the take-over")
    stable = views == [e.stats["views"] for e in survivors]
    engines.stop_all()

    for name in names:
        ms = sorted(c["ms"] for c in callee.of(name))
        dupes = [m for m, n in Counter(ms).items() if n > 1]
        assert not dupes, f"{name} fired twice: {dupes}"
    rows = history()
    keys = Counter((r.job_id, round(r.scheduled_time * 1000)) for r in rows)
    assert max(keys.values()) == 1, "a fire recorded twice"
    assert {r.status for r in rows} <= {"ok", "lost"}
    for name in names:  # no run time vanished, across the crash either
        seen = sorted(ms for job, ms in keys if job == name)
        gaps = [(a, b) for a, b in itertools.pairwise(seen) if b - a != 1000]
        assert not gaps, f"{name}: missing fires {gaps}"
    late = [r for r in rows if round(r.scheduled_time * 1000) > mark and r.job_id in moved]
    odd = [(r.job_id, round(r.scheduled_time * 1000) - mark, r.scheduler_name, r.status,
            owner_of(r.job_id, live)) for r in late if r.scheduler_name != owner_of(r.job_id, live)]
    assert late
    # unless a survivor's heartbeat lapsed meanwhile (load), each moved job has one new owner
    assert not odd or not stable, (odd, victim.owner, live)
    assert all(r.scheduler_name != victim.owner for r in late)
    # the new owners claimed the run times of the jobs they had parked while the victim owned them
    assert sum(e.stats["caught_up"] for e in survivors) >= len(moved)


def _hold_the_only_worker(engine: Engine) -> threading.Event:
    """Stall the engine deterministically: its single executor thread waits on an event."""
    gate = threading.Event()
    held = threading.Event()

    def block() -> None:
        held.set()
        gate.wait(60)

    engine._pool.submit(block)
    assert held.wait(10)
    return gate


def test_an_engine_that_falls_behind_coalesces_its_backlog_into_missed(
        sqlite_env, engines, callee, add):
    add("ov", f"{callee.url}/ov", misfire_grace_time=30)
    (engine,) = engines.start(1, workers=1, coalesce_after=1.0)
    wait_until(lambda: len(callee.of("ov")) >= 1, timeout=10, what="a first fire")
    gate = _hold_the_only_worker(engine)
    stalled_at = max(c["ms"] for c in callee.of("ov"))
    try:
        # while the worker is stuck, every newer fire supersedes the waiting one, and the
        # superseded one is recorded at once - not when a worker finally gets to it
        wait_until(lambda: sum(r.status == "missed" for r in history("ov")) >= 3,
                   timeout=15, what="coalesced fires recorded while the engine is stalled")
        assert len(callee.of("ov")) == len([c for c in callee.of("ov")
                                            if c["ms"] <= stalled_at])
    finally:
        released = time.time()
        gate.set()
    wait_until(lambda: any(c["ms"] / 1000 > released + 1 for c in callee.of("ov")),
               timeout=10, what="fires on schedule again")
    engines.stop_all()

    # only the fires less than coalesce_after late when the worker came back ran: no backlog
    stalled = [c["ms"] for c in callee.of("ov") if stalled_at < c["ms"] < released * 1000]
    assert len(stalled) <= 3, stalled
    rows = history("ov")
    keys = Counter(round(r.scheduled_time * 1000) for r in rows)
    assert max(keys.values()) == 1, "a fire recorded twice"
    seen = sorted(keys)
    assert not [(a, b) for a, b in itertools.pairwise(seen) if b - a != 1000], \
        "a run time is neither run nor recorded"
    missed = {round(r.scheduled_time * 1000) for r in rows if r.status == "missed"}
    ran = [c["ms"] for c in callee.of("ov")]
    assert not missed & set(ran), "a fire recorded missed was run anyway"
    assert all("coalesced" in r.cmd_output for r in rows if r.status == "missed")
    assert {r.status for r in rows} == {"ok", "missed"}
    assert engine.stats["coalesced"] == len(missed)
    assert Counter(ran).most_common(1)[0][1] == 1


def test_a_stopping_engine_hands_its_jobs_over_before_it_drains(sqlite_env, engines, callee,
                                                                add):
    names = [f"g{i}" for i in range(JOBS)]
    for name in names:
        add(name, f"{callee.url}/tick")
    group = engines.start(2, workers=1, node_ttl=10.0)
    wait_until(lambda: converged(group), timeout=10, what="both engines see each other")
    owners = sorted(e.owner for e in group)
    leaving = next(e for e in group if any(owner_of(n, owners) == e.owner for n in names))
    staying = next(e for e in group if e is not leaving)
    mine = [n for n in names if owner_of(n, owners) == leaving.owner]
    wait_until(lambda: all(callee.of(n) for n in names), timeout=10)
    gate = _hold_the_only_worker(leaving)  # its drain cannot finish until we say so
    stopper = threading.Thread(target=leaving.stop, kwargs={"timeout": 30})
    stopper.start()
    try:
        wait_until(lambda: converged([staying]), timeout=10, what="the peer takes its jobs")
        handed = max(c["ms"] for c in callee.calls)
        # still draining, so still alive: its heartbeat covers what it has running
        assert leaving.claims.alive([leaving.owner])[leaving.owner]
        wait_until(lambda: all(any(c["ms"] > handed for c in callee.of(n)) for n in mine),
                   timeout=10, what="its jobs fire on the peer while it drains")
        assert stopper.is_alive()
    finally:
        gate.set()
        stopper.join(30)
    engines.stop_all()
    rows = [r for r in history() if r.job_id in mine and
            round(r.scheduled_time * 1000) > handed]
    assert rows and {r.scheduler_name for r in rows} == {staying.owner}
    keys = Counter((r.job_id, round(r.scheduled_time * 1000)) for r in history())
    assert max(keys.values()) == 1


@pytest.mark.parametrize("phase", ["c", "r"])
def test_a_claim_whose_reply_was_lost_is_still_run(sqlite_env, engines, callee, add, phase):
    """A claim batch that failed on a Redis error is retried; a SET that was applied
    although its reply was lost then "loses" to our own claim - it must still run, also
    when the batch had been claimed straight into the running phase (idle workers)."""
    add("lr", f"{callee.url}/lr", rule="1h")
    (engine,) = engines.start(1)
    wait_until(lambda: "lr" in engine._specs, timeout=5)
    ts = time.time()
    fire = Fire(engine._specs["lr"], ts, fire_key("lr", round(ts * 1000)), "00000000000LOST1")
    runtime.get_redis().set(fire.key, f"{phase}|{engine.owner}|{fire.reqid}", px=60_000)
    engine.watcher.add(fire, time.time())
    wait_until(lambda: [c for c in callee.of("lr") if c["reqid"] == fire.reqid], timeout=10,
               what="the fire runs")
    wait_until(lambda: [r for r in history("lr") if r.fire_key == fire.key], timeout=10)
    (row,) = [r for r in history("lr") if r.fire_key == fire.key]
    assert row.status == "ok" and row.reqid == fire.reqid
    assert len([c for c in callee.of("lr") if c["reqid"] == fire.reqid]) == 1
