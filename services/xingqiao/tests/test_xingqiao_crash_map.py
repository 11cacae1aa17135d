"""Crash test of maps, sub-flows and triggers (issue 29), on SQLite and on MariaDB: 100
flows, each a 50-item map beside a sub-flow, 80 of them created over HTTP and 20 started
by trigger events, run by two xingqiao replicas and two consumers of the test app. One
replica and one consumer are SIGKILLed mid-run, at a moment the consumer holds claimed
item messages, and restarted. Then: every flow finished; each item's handler ran at least
once (the test app counts each run in Redis) and the map collected every item in order;
the extra runs are at most the handler messages in flight at the kills; each sub-flow
created exactly one child; each trigger event started exactly one flow."""

from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from test_xingqiao_crash import sigkill
from xq_helpers import HERE, XQ, _env

from butterfly_common.mq import Broker
from butterfly_common.testing import (
    ButterflyService,
    RedisServer,
    child_pids,
    mariadb_database,
    stop_processes,
    wait_until,
)

FLOWS = 100  # in all: CREATED over HTTP plus EVENTS from a trigger
EVENTS = 20
CREATED = FLOWS - EVENTS
ITEMS = 50
TRIGGER = "/xingqiao/trigger"
NOTICE = "/xingqiao/task_notice"
#: The topics whose messages run a handler of the test app (the tasks' commands).
HANDLERS = ("/xqt/item", "/xqt/ok", "/xqt/gather")


def flow_types(xq: XQ, k: str) -> tuple[str, str]:
    """``crash-<k>``: a map ``m`` over the flow's ``items`` beside a sub-flow ``s`` (a
    ``leaf-<k>``), both collected by ``d``. Items and leaves count their runs under the
    flow's own ``key``: ``xqt:runs:<key>:<item>`` and ``xqt:runs:<key>``."""
    leaf, crash = f"leaf-{k}", f"crash-{k}"
    xq.flow_type(leaf, [{"label": "h", "cmd": "/xqt/ok", "requires": ["key", "value"],
                         "is_save": True}])
    xq.flow_type(crash, [
        {"label": "m", "cmd": "/xqt/item", "map_over": "items", "map_as": "item",
         "requires": ["key"], "max_parallel": 10},
        {"label": "s", "subflow": {"type": leaf}, "requires": ["key", "value"],
         "extra": {"value": "nested"}, "provides": ["value"]},
        {"label": "d", "cmd": "/xqt/gather", "requires": ["results"],
         "dependencies": ["m", "s"], "is_save": True},
    ], extra_required=["items", "key"])
    return leaf, crash


def consumer(env: dict[str, str], port: int | None = None) -> ButterflyService:
    return ButterflyService("xq_testapp:service", env, port=port).start()


def claimed_by(broker: Broker, pids: list[int]) -> set[str]:
    """Ids of handler messages claimed right now by processes ``pids``."""
    marks = {f":{pid}:" for pid in pids}
    return {m.id for t in HANDLERS for m in broker.list(t, "started", page_size=1000)[1]
            if any(mark in m.worker for mark in marks)}


def signal_all(service: ButterflyService, sig: signal.Signals) -> None:
    assert service.proc is not None
    for pid in [service.proc.pid, *child_pids(service.proc.pid)]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def freeze_holding(service: ButterflyService, broker: Broker) -> set[str]:
    """SIGSTOP the consumer (master and workers) at a moment it holds claimed messages,
    and return their ids: frozen, it claims nothing more until the kill, so the messages
    in flight counted meanwhile are all it can leave behind."""
    assert service.proc is not None
    workers = child_pids(service.proc.pid)

    def frozen_holding() -> set[str]:
        stop_processes([service.proc.pid, *workers])  # type: ignore[union-attr]
        # a command a worker sent just before it stopped may still be on its way: the
        # first read's round trips let the store take it, the second one counts
        claimed_by(broker, workers)
        held = claimed_by(broker, workers)
        if not held:  # between two messages: let it run on and try again
            signal_all(service, signal.SIGCONT)
        return held

    return wait_until(frozen_holding, 60, interval=0.005,
                      what="the consumer frozen while holding handler messages")


def kill_frozen(service: ButterflyService) -> None:
    """SIGKILL ends a stopped process too; the CONT only lets the reaping go on."""
    assert service.proc is not None
    pids = [service.proc.pid, *child_pids(service.proc.pid)]
    sigkill(service)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)


@pytest.mark.parametrize("database", ["sqlite", "mariadb"])
def test_maps_subflows_and_triggers_survive_a_crash(database: str, tmp_path: Path):
    k = uuid.uuid4().hex[:8]
    with contextlib.ExitStack() as stack:
        db_url = (f"sqlite:///{tmp_path / 'xq.db'}" if database == "sqlite"
                  else stack.enter_context(mariadb_database("bf_xq_crashmap")))
        redis = stack.enter_context(RedisServer())
        xq_env = _env(redis.url, {"BUTTERFLY_CONSUME": "1", "BUTTERFLY_DB_URL": db_url})
        app_env = _env(redis.url, {"BUTTERFLY_CONSUME": "1", "PYTHONPATH": str(HERE)
                                   + os.pathsep + os.environ.get("PYTHONPATH", "")})
        pool = stack.enter_context(ThreadPoolExecutor(4))  # creates flows, then checks them
        starter = stack.enter_context(ThreadPoolExecutor(2))  # starts beside the main thread
        # started side by side; the replicas one after the other (on a fresh SQLite file,
        # two replicas creating the tables at once can meet "database is locked")
        consumer_starts = [starter.submit(consumer, app_env) for _ in range(2)]
        replicas = [ButterflyService("xingqiao", xq_env).start() for _ in range(2)]
        consumers = [f.result() for f in consumer_starts]

        @stack.callback
        def stop() -> None:
            for service in replicas + consumers:
                if service.proc is not None and service.proc.poll() is None:
                    signal_all(service, signal.SIGCONT)  # should a failure leave it frozen
                service.stop()

        xq = XQ(replicas[1].url, redis.url)  # the replica that survives
        stack.callback(xq.close)  # before stop() (see XQ.close)
        broker = Broker(xq.redis)
        leaf, crash = flow_types(xq, k)
        xq.ok(xq.post("trigger_create", name=f"crash-{k}", job_type=crash))
        items = list(range(ITEMS))
        keys = [f"{k}-c{i}" for i in range(CREATED)] + [f"{k}-t{i}" for i in range(EVENTS)]
        events = [f"evt-{k}-{i}" for i in range(EVENTS)]

        def fire(i: int) -> None:
            broker.publish(TRIGGER, {"trigger": f"crash-{k}", "event": {
                "items": items, "key": keys[CREATED + i]}}, msg_id=events[i])

        def finished() -> int:
            return xq.ok(xq.get("list_jobs", job_type=crash, job_status="finished",
                                page_size=1))["total"]

        def progress() -> str:
            """What a timeout reports: flows finished and every queue's counts."""
            return f"{finished()} of {FLOWS} finished; " + ", ".join(
                f"{t} {broker.counts(t)}" for t in (*HANDLERS, TRIGGER, NOTICE))

        started = time.monotonic()
        futures = [pool.submit(xq.create, crash, {"items": items, "key": key})
                   for key in keys[:CREATED]]
        for i in range(EVENTS // 2):  # half the events now, half just before the kills
            fire(i)
        # kill mid-run, at a moment the doomed consumer holds claimed item messages
        wait_until(lambda: sum(f.done() for f in futures) >= CREATED // 4, 120,
                   interval=0.02, what="a quarter of the flows created")
        doomed = freeze_holding(consumers[0], broker)
        flight = sum(broker.counts(t)["started"] for t in HANDLERS)
        done_at_kill = finished()
        for i in range(EVENTS // 2, EVENTS):
            fire(i)
        sigkill(replicas[0])
        kill_frozen(consumers[0])
        killed_at = time.monotonic()
        restarted = starter.submit(consumer, app_env, consumers[0].port)
        replicas[0] = ButterflyService("xingqiao", xq_env, port=replicas[0].port).start()
        consumers[0] = restarted.result()
        job_ids = [f.result() for f in futures]
        try:
            wait_until(lambda: finished() == FLOWS, 240, interval=0.3,
                       what="every flow finished")
        except TimeoutError as exc:
            raise AssertionError(progress()) from exc
        took, recovered = time.monotonic() - started, time.monotonic() - killed_at

        # each trigger event: answered with its own flow, and no flow more
        answers = [broker.get(e, TRIGGER) for e in events]
        assert all(m is not None and m.status == "finished" and m.result for m in answers)
        again = sum(m.attempts > 1 for m in answers if m)
        started_by = [m.result["data"]["job_id"] for m in answers]  # type: ignore[union-attr]
        assert len(set(started_by)) == EVENTS
        triggered = xq.ok(xq.get("list_jobs", operator=f"trigger:crash-{k}", job_type=crash,
                                page_size=100))  # (their children are the trigger's too)
        assert sorted(j["job_id"] for j in triggered["list"]) == sorted(started_by)
        every = xq.ok(xq.get("list_jobs", job_type=crash, page_size=200))
        assert every["total"] == FLOWS  # no flow twice, none lost
        assert sorted(j["job_id"] for j in every["list"]) == sorted(job_ids + started_by)

        def check(job_id: int) -> tuple[int, int, int]:
            """One flow's own asserts; its handler runs, extra runs and sub-flow child."""
            job = xq.job(job_id)
            assert job["job_status"] == "finished", job
            assert job["ret_data"] == {"order": items, "failed": []}, job_id
            tasks = xq.tasks(job_id)
            assert len(tasks) == 3 + ITEMS and {t["task_status"] for t in tasks.values()} \
                == {"finished"}, job_id
            key = job["job_extra"]["key"]
            counts = [int(n or 0) for n in xq.redis.mget(
                [f"xqt:runs:{key}:{i}" for i in items] + [f"xqt:runs:{key}"])]
            assert min(counts) >= 1, (job_id, counts)  # every item, and the leaf, ran
            gather = tasks["d"]
            msg = broker.get(gather["task_reqid"], gather["task_cmd"])
            assert msg is not None and msg.attempts >= 1
            assert tasks["s"]["ret_data"]["value"] == "nested"
            return (sum(counts) + msg.attempts, sum(counts) - len(counts) + msg.attempts - 1,
                    tasks["s"]["child_job_id"])

        checked = list(pool.map(check, job_ids + started_by))  # 4 flows read at a time
        runs = sum(c[0] for c in checked)
        extra = sum(c[1] for c in checked)
        children = [c[2] for c in checked]
        load = Path("/proc/loadavg").read_text().split()[0]
        print(f"\ncrash map ({database}): {FLOWS} flows x {ITEMS} items + a sub-flow "
              f"({EVENTS} by trigger) finished in {took:.1f}s ({recovered:.1f}s after the "
              f"kills); {done_at_kill} done at the kills, {flight} handler messages in "
              f"flight ({len(doomed)} claimed by the killed consumer); handler runs {runs}, "
              f"extra {extra}; {again} trigger events delivered again; load {load}")
        assert extra <= flight
        # what the killed consumer held was delivered again (it ran, or ran once more)
        held = [m for t in HANDLERS for m in (broker.get(i, t) for i in doomed) if m]
        assert len(held) == len(doomed) and all(m.attempts > 1 for m in held), held
        # each sub-flow task made exactly one child, linked back, finished
        leaves = xq.ok(xq.get("list_jobs", job_type=leaf, page_size=200))
        assert leaves["total"] == FLOWS and len(set(children)) == FLOWS
        assert sorted(children) == sorted(j["job_id"] for j in leaves["list"])
        assert {j["job_status"] for j in leaves["list"]} == {"finished"}
