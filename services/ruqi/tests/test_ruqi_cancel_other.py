"""Overlap ``cancel_other``: a fire due while the job's previous fire still runs stops that
fire - a script's process, a topic message still queued, an HTTP call - and runs. The
displacement is in the job's one overlap hash, so it reaches the replica running the old
fire, whichever it is (cancel.py)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
from ruqi_sim import rows

from butterfly_common import mq, runtime
from butterfly_common.reqid import new_reqid
from butterfly_common.testing import wait_until
from butterfly_ruqi.cancel import Cancel, Displacements
from butterfly_ruqi.claims import Claims, fire_key, overlap_key
from butterfly_ruqi.engine import Engine
from butterfly_ruqi.schedule import Fire

#: Writes its pid to ``pid-<scheduled ms>``, then holds until ``release`` exists (30 s max).
HOLD_PY = """\
import os, pathlib, time
here = pathlib.Path.cwd()
ms = os.environ["RUQI_SCHEDULED_MS"]
(here / f"tmp-{ms}").write_text(str(os.getpid()))
os.replace(here / f"tmp-{ms}", here / f"pid-{ms}")
end = time.time() + 30
while time.time() < end and not (here / "release").exists():
    time.sleep(0.05)
print("released", ms)
"""

TOPIC = "/demo_api/hello"


@pytest.fixture
def scripts(tmp_path: Path, env: Any, redis_server: Any, db_url: str,
            configure_runtime: Any) -> Path:
    """A script dir holding hold.py; the runtime's RUQI_SCRIPT_DIR names it (add_job)."""
    root = tmp_path / "scripts"
    root.mkdir()
    (root / "hold.py").write_text(HOLD_PY)
    configure_runtime(redis_server.url, db_url, RUQI_SCRIPT_DIR=str(root))
    return root


def manual(engine: Engine, job_id: str, ts: float) -> Fire:
    return Fire(engine._specs[job_id], ts, fire_key(job_id, round(ts * 1000), manual=True),
                new_reqid(), manual=True)


def pid_of(root: Path, fire: Fire) -> int:
    path = root / f"pid-{round(fire.ts * 1000)}"
    wait_until(path.exists, timeout=10, what=f"the script of {fire.ts} started")
    return int(path.read_text())


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def row(job_id: str, fire: Fire) -> Any:
    return next((r for r in rows(job_id) if r.fire_key == fire.key), None)


def test_the_lua_state_displaces_the_holder_and_a_finished_run_is_a_no_op(sqlite_env):
    redis = runtime.get_redis()
    a, b = Claims(redis, "engine-a"), Claims(redis, "engine-b")
    a.heartbeat(30)
    b.heartbeat(30)
    assert a.overlap_acquire("j", "engine-a|1000", 60, 0, "", cancel=True) == ("run", "")
    assert b.overlap_acquire("j", "engine-b|2000", 60, 0, "", cancel=True) == \
        ("cancel", "engine-a|1000")
    # A sees it was displaced, and by which fire; B is the holder
    assert a.overlap_displaced([("j", "engine-a|1000"), ("j", "engine-b|2000")]) == \
        [("engine-b|2000", "engine-b|2000"), ("engine-b|2000", "")]
    # B ends first: the mark for A stays until A's own release, which drops it
    assert b.overlap_release("j", "engine-b|2000", 60) == ("done", "")
    assert a.overlap_displaced([("j", "engine-a|1000")]) == [("", "engine-b|2000")]
    assert a.overlap_release("j", "engine-a|1000", 60) == ("gone", "")
    assert redis.exists(overlap_key("j")) == 0
    # a run that already ended is not canceled: the next fire simply runs
    assert a.overlap_acquire("k", "engine-a|1", 60, 0, "", cancel=True)[0] == "run"
    assert a.overlap_release("k", "engine-a|1", 60) == ("done", "")
    assert b.overlap_acquire("k", "engine-b|2", 60, 0, "", cancel=True) == ("run", "")
    assert redis.hgetall(overlap_key("k")).keys() == {"run", "exp"}
    # the holder's own token again (a repeated call) never cancels the run itself
    assert b.overlap_acquire("k", "engine-b|2", 60, 0, "", cancel=True) == \
        ("skip", "engine-b|2")


def test_a_cancel_after_the_command_ended_is_a_no_op(sqlite_env):
    redis = runtime.get_redis()
    a, b = Claims(redis, "engine-a"), Claims(redis, "engine-b")
    a.heartbeat(30)
    b.heartbeat(30)
    watched = Displacements(a)
    assert a.overlap_acquire("j", "engine-a|1000", 60, 0, "", cancel=True)[0] == "run"
    cancel = watched.add("j", "engine-a|1000")
    hooks: list[str] = []
    cancel.on_cancel(lambda: hooks.append("stopped"))
    assert watched.check() == 0  # still the holder
    assert cancel.close() is False  # the command ended on its own
    assert b.overlap_acquire("j", "engine-b|2000", 60, 0, "", cancel=True)[0] == "cancel"
    assert watched.check() == 0 and hooks == [] and not cancel.is_set()
    watched.remove("j", "engine-a|1000")
    assert len(watched) == 0 and watched.check() == 0
    # a hook removed before the cancel never runs; one registered after runs at once
    late = Cancel()

    def removed() -> None:
        hooks.append("removed")

    late.on_cancel(removed)
    late.off(removed)
    assert late.cancel("canceled by fire at 2.000") and not late.cancel("again")
    late.on_cancel(lambda: hooks.append("late"))
    assert hooks == ["late"] and late.close() is True


def test_the_second_fire_terminates_the_running_script(scripts, engines, add):
    add("c1", "python hold.py", rule="1h", overlap="cancel_other", timeout=60)
    (engine,) = engines.start(1, script_dir=str(scripts))
    wait_until(lambda: "c1" in engine._specs, timeout=5)
    first = manual(engine, "c1", round(time.time(), 3))
    engine._claim([first])
    pid = pid_of(scripts, first)
    second = manual(engine, "c1", first.ts + 0.5)
    engine._claim([second])
    wait_until(lambda: not alive(pid), timeout=5, what="the first script's process gone")
    wait_until(lambda: row("c1", first) is not None, timeout=5, what="the first's row")
    canceled = row("c1", first)
    assert canceled.status == "canceled" and not canceled.cmd_is_success
    assert canceled.cmd_output.startswith(f"canceled by fire at {second.ts:.3f}\n")
    assert "retcode=-15" in canceled.cmd_output
    assert alive(pid_of(scripts, second))
    (scripts / "release").touch()
    wait_until(lambda: getattr(row("c1", second), "status", None) == "ok", timeout=10,
               what="the second fire ran to its end")
    assert f"released {round(second.ts * 1000)}" in row("c1", second).cmd_output
    assert engine.stats["canceled"] == 1
    wait_until(lambda: not runtime.get_redis().exists(overlap_key("c1")), timeout=5,
               what="the overlap state cleared")


def test_the_cancel_reaches_the_replica_running_the_fire(scripts, engines, add):
    add("c2", "python hold.py", rule="1h", overlap="cancel_other", timeout=60)
    a, b = engines.start(2, script_dir=str(scripts))
    wait_until(lambda: "c2" in a._specs and "c2" in b._specs, timeout=5)
    first = manual(a, "c2", round(time.time(), 3))
    a._claim([first])
    pid = pid_of(scripts, first)
    second = manual(b, "c2", first.ts + 0.5)
    claimed = time.monotonic()
    b._claim([second])
    wait_until(lambda: not alive(pid), timeout=5, what="A's script gone")
    took = time.monotonic() - claimed
    # B's loop interval is 0.1 s here (0.2 s by default); SIGTERM ends the script at once
    assert took < 1.5, f"the cancel took {took:.3f}s to reach A"
    wait_until(lambda: row("c2", first) is not None, timeout=5)
    assert row("c2", first).status == "canceled"
    assert row("c2", first).scheduler_name == a.owner
    assert row("c2", first).cmd_output.startswith(f"canceled by fire at {second.ts:.3f}")
    (scripts / "release").touch()
    wait_until(lambda: getattr(row("c2", second), "status", None) == "ok", timeout=10)
    assert row("c2", second).scheduler_name == b.owner
    assert (a.stats["canceled"], b.stats["canceled"]) == (1, 0)
    print(f"cross-replica cancel: {took * 1000:.0f} ms from B's claim to A's script gone")


def test_a_queued_topic_message_is_deleted_and_a_started_one_reported(sqlite_env, engines,
                                                                        add):
    broker = mq.Broker(runtime.get_redis())
    broker.heartbeat("fake-consumer", [TOPIC])
    add("t1", f"{TOPIC}#{{}}", rule="1h", overlap="cancel_other", wait_result=True,
        timeout=30)
    (engine,) = engines.start(1)
    wait_until(lambda: "t1" in engine._specs, timeout=5)
    base = round(time.time(), 3)
    fires = [manual(engine, "t1", base + i * 0.5) for i in range(3)]

    def msg_id(fire: Fire) -> str:
        return f"ruqi:t1:{round(fire.ts * 1000)}"

    engine._claim([fires[0]])
    wait_until(lambda: broker.get(msg_id(fires[0])) is not None, timeout=5,
               what="the first message queued")
    engine._claim([fires[1]])
    wait_until(lambda: row("t1", fires[0]) is not None, timeout=5, what="the first's row")
    first = row("t1", fires[0])
    assert first.status == "canceled", first.cmd_output
    assert first.cmd_output.startswith(f"canceled by fire at {fires[1].ts:.3f}\n")
    assert "message deleted from the queue (was queued)" in first.cmd_output
    assert broker.get(msg_id(fires[0])) is None
    # the second message goes to a worker: it cannot be stopped, the row says so
    claimed = wait_until(lambda: broker.claim(TOPIC, "fake-consumer"), timeout=5)
    assert [m.id for m in claimed] == [msg_id(fires[1])]
    engine._claim([fires[2]])
    wait_until(lambda: row("t1", fires[1]) is not None, timeout=5, what="the second's row")
    second = row("t1", fires[1])
    assert second.status == "canceled"
    assert "could not be stopped: already started" in second.cmd_output
    assert broker.get(msg_id(fires[1])).status == "started"
    # the third runs normally: its handler's result is its outcome
    third = wait_until(lambda: broker.claim(TOPIC, "fake-consumer"), timeout=5)
    broker.complete(third[0], {"stat": "OK"})
    wait_until(lambda: getattr(row("t1", fires[2]), "status", None) == "ok", timeout=5)


def test_a_waiting_http_call_is_abandoned(sqlite_env, engines, callee, add):
    add("h1", f"{callee.url}/slow?sleep=4", rule="1h", overlap="cancel_other", timeout=10)
    (engine,) = engines.start(1)
    wait_until(lambda: "h1" in engine._specs, timeout=5)
    first = manual(engine, "h1", round(time.time(), 3))
    engine._claim([first])
    wait_until(lambda: callee.active == 1, timeout=5, what="the first call arrived")
    second = manual(engine, "h1", first.ts + 0.5)
    engine._claim([second])
    wait_until(lambda: row("h1", first) is not None, timeout=3,
               what="the first recorded before its answer")
    assert row("h1", first).status == "canceled"
    assert "abandoned: the HTTP call had not answered" in row("h1", first).cmd_output
    wait_until(lambda: getattr(row("h1", second), "status", None) == "ok", timeout=10)


def test_fires_that_do_not_overlap_run_normally(scripts, engines, add):
    (scripts / "release").touch()  # hold.py ends at once
    add("c3", "python hold.py", rule="1s", overlap="cancel_other")
    engines.start(2, script_dir=str(scripts))
    wait_until(lambda: len([r for r in rows("c3") if r.status == "ok"]) >= 3, timeout=15,
               what="three runs")
    assert {r.status for r in rows("c3")} == {"ok"}
