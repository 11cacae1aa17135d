"""Issue 12, defect 14: exactly one history row per fire, however replicas interleave.

On SQLite and a private MariaDB database: the store itself (a retried batch, a late ``lost``,
a real outcome after ``lost``) and the engine race that produced two rows under load - an
owner that only stalled (heartbeat gone) while a peer recorded its running fire ``lost``.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import peewee

from butterfly_common import db, runtime
from butterfly_common.testing import wait_until
from butterfly_ruqi.claims import RUNNING, node_key, parse_state
from butterfly_ruqi.history import Record, _store
from butterfly_ruqi.models import History


def row(status: str, owner: str = "e1", key: str = "ruqi:fire:j:1000") -> dict[str, Any]:
    return {"job_id": "j", "job_name": "n", "cmd": "x", "status": status,
            "cmd_is_success": status == "ok", "cmd_output": status, "cmd_cost": 0.1,
            "scheduled_time": 1.0, "start_time": None, "end_time": None,
            "scheduler_name": owner, "reqid": "0" * 16, "manual": False, "fire_key": key}


def stored() -> list[History]:
    with db.database.connection_context():
        return list(History.select())


def test_defect_14_a_retried_batch_adds_no_row(env):
    batch = [Record(row("ok")), Record(row("failed", key="ruqi:fire:j:2000"))]
    _store(batch, {})
    _store(batch, {})  # the commit's reply was lost: the writer stores the batch again
    assert sorted(r.fire_key for r in stored()) == ["ruqi:fire:j:1000", "ruqi:fire:j:2000"]


def test_defect_14_the_real_outcome_replaces_lost_and_lost_never_replaces_it(env):
    _store([Record(row("lost", owner="peer"))], {})
    _store([Record(row("ok", owner="owner"))], {})
    (only,) = stored()
    assert (only.status, only.scheduler_name, only.cmd_output) == ("ok", "owner", "ok")
    _store([Record(row("lost", owner="peer2"))], {})
    (only,) = stored()
    assert (only.status, only.scheduler_name) == ("ok", "owner")


def test_defect_14_a_stalled_owner_and_the_peer_that_gave_up_on_it_leave_one_row(
        env, engines, callee, add):
    add("slow", f"{callee.url}/slow?sleep=1.5", rule="1s")
    group = engines.start(2)
    redis = runtime.get_redis()

    def running_owner() -> str | None:
        for key in redis.keys("ruqi:fire:slow:*"):
            phase, owner, _ = parse_state(redis.get(key))
            if phase == RUNNING:
                return owner
        return None

    owner = wait_until(running_owner, 15, what="a fire of 'slow' running")
    stalled = next(e for e in group if e.owner == owner)
    stalled._beat.stop()  # alive and working, but its heartbeat is gone
    redis.delete(node_key(owner))
    peer = next(e for e in group if e is not stalled)
    wait_until(lambda: peer.watcher.recorded_lost >= 1, 15, what="the peer records lost")
    wait_until(lambda: stalled.status()["fires_running"] == 0 and
               stalled.writer.pending() == 0, 15, what="the stalled owner reports")
    engines.stop_all()
    keys = Counter((r.job_id, round(r.scheduled_time * 1000)) for r in stored())
    assert keys and max(keys.values()) == 1, [k for k, n in keys.items() if n > 1]
    called = Counter((c["job"], c["ms"]) for c in callee.calls)
    assert max(called.values()) == 1
    # every fire the callee answered is recorded with its real outcome, not "lost"
    by_key = {(r.job_id, round(r.scheduled_time * 1000)): r for r in stored()}
    finished = [k for k in called if k in by_key and by_key[k].end_time is not None]
    assert finished and all(by_key[k].status == "ok" for k in finished)


def test_defect_14_a_table_from_an_older_release_is_migrated(env):
    from butterfly_ruqi.models import migrate

    table = History._meta.table_name
    mysql = isinstance(db.database.obj, peewee.MySQLDatabase)
    with db.database.connection_context():
        db.database.execute_sql(f"DROP INDEX {table}_fire_key" + (f" ON {table}" if mysql
                                                                    else ""))
        db.database.execute_sql(f"ALTER TABLE {table} DROP COLUMN fire_key")
    migrate()
    migrate()  # a second replica starting finds it done
    _store([Record(row("lost"))], {})
    _store([Record(row("ok"))], {})
    assert [r.status for r in stored()] == ["ok"]


def test_one_statement_moves_many_cursors_fenced_by_version_and_forward_only(env):
    """The restart cursors of a batch go in one UPDATE a chunk (history.cursor_sql): each
    job's own value, only for its version, only forward, the other jobs untouched."""
    from butterfly_ruqi import history
    from butterfly_ruqi.models import Job

    n = history.CURSOR_CHUNK + 7  # two statements
    with db.database.connection_context():
        for i in range(n + 1):
            Job.create(id=f"c{i:03d}", name="n", trigger="interval", rule="1s", cmd="x",
                       timezone="UTC", start_time=0.0, version=1, next_run_time=100.0 + i,
                       misfire_grace_time=30, coalesce=True, overlap="allow", timeout=30.0)
    moves = {(f"c{i:03d}", 1): 1000.0 + i for i in range(n)}
    moves[("c000", 1)] = 50.0  # backwards: stays
    moves[("c001", 1)] = 1001.0
    del moves[("c001", 1)]
    moves[("c001", 2)] = 2001.0  # an older version's move: the edit wins, stays
    _store([], moves)
    with db.database.connection_context():
        got = {j.id: j.next_run_time for j in Job.select()}
    want = {f"c{i:03d}": 1000.0 + i for i in range(n)}
    want.update({"c000": 100.0, "c001": 101.0, f"c{n:03d}": 100.0 + n})
    assert got == want
