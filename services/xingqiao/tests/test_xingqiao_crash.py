"""Crash test: 200 diamond flows (a -> b, c, a 5-item map m and a sub-flow s -> d -> e)
over core's handlers, two xingqiao replicas and two core consumers behind nutcracker, on
MariaDB. One replica and one consumer are SIGKILLed mid-run and restarted: every flow
finishes, every task and map item ran at least once, each map collected its items in
order, each sub-flow was created exactly once and passed its child's result on, and extra
runs are bounded by the messages in flight at the kills."""

from __future__ import annotations

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor

from xq_helpers import XQ, _env

from butterfly_common.mq import Broker
from butterfly_common.redis_client import make_redis
from butterfly_common.testing import (
    ButterflyService,
    Nutcracker,
    RedisServer,
    child_pids,
    mariadb_database,
    wait_until,
)

FLOWS = 200
WORDS = ["w0", "w1", "w2", "w3", "w4"]
TASKS = 7 + len(WORDS)  # a b c m s d e, and m's items
TOPICS = ("/demo_api/hello", "/demo_api/ping", "/demo_api/collect")
LEAF = [{"label": "h", "cmd": "/demo_api/hello", "requires": ["str_info"], "is_save": True}]
DIAMOND = [
    {"label": "a", "cmd": "/demo_api/hello", "params": {"str_info": "crash"}},
    {"label": "b", "cmd": "/demo_api/ping", "dependencies": ["a"]},
    {"label": "c", "cmd": "/demo_api/hello", "requires": ["str_info"], "dependencies": ["a"]},
    {"label": "m", "cmd": "/demo_api/hello", "map_over": "words", "map_as": "str_info",
     "max_parallel": 2, "dependencies": ["a"]},
    {"label": "s", "subflow": {"type": "leaf"}, "params": {"str_info": "nested"},
     "dependencies": ["a"], "provides": ["str_info"]},
    {"label": "d", "cmd": "/demo_api/collect", "requires": ["all_taskdata"],
     "dependencies": ["b", "c", "m", "s"]},
    {"label": "e", "cmd": "/demo_api/ping", "dependencies": ["d"], "is_save": True},
]


def sigkill(service: ButterflyService) -> None:
    """A crash: the gunicorn workers and the master, all at once, no cleanup."""
    assert service.proc is not None
    for pid in child_pids(service.proc.pid):
        os.kill(pid, signal.SIGKILL)
    service.kill()


def claimed_by(broker: Broker, pids: list[int]) -> set[str]:
    """Ids of task messages claimed right now by consumer processes ``pids``."""
    marks = {f":{pid}:" for pid in pids}
    return {m.id for t in TOPICS for m in broker.list(t, "started", page_size=1000)[1]
            if any(mark in m.worker for mark in marks)}


def in_flight(broker: Broker) -> int:
    return sum(broker.counts(t)["started"] for t in TOPICS) \
        + broker.counts("/xingqiao/task_notice")["started"]


def test_crash_two_replicas_two_consumers():
    with RedisServer() as s1, RedisServer() as s2, Nutcracker([s1.port, s2.port]) as proxy, \
            mariadb_database("bf_xq_crash") as db_url:
        url = proxy.url
        xq_env = {**_env(url, {"BUTTERFLY_CONSUME": "1", "BUTTERFLY_DB_URL": db_url})}
        core_env = _env(url, {"BUTTERFLY_CONSUME": "1"})
        with ThreadPoolExecutor(2) as starter:  # the consumers start beside the replicas
            starts = [starter.submit(ButterflyService("core", core_env).start)
                      for _ in range(2)]
            replicas = [ButterflyService("xingqiao", xq_env).start() for _ in range(2)]
        consumers = [f.result() for f in starts]
        broker = Broker(make_redis(url))
        clients: list[XQ] = []
        try:
            clients += [XQ(r.url, url) for r in replicas]
            clients[0].flow_type("leaf", LEAF)
            clients[0].flow_type("diamond", DIAMOND)
            started = time.monotonic()
            pool = ThreadPoolExecutor(8)
            # creates go to the replica that survives; both replicas handle notices + sweep
            futures = [pool.submit(clients[1].create, "diamond", {"words": WORDS})
                       for _ in range(FLOWS)]

            def finished_count() -> int:
                return clients[1].ok(clients[1].get("list_jobs", job_status="finished",
                                                    job_type="diamond", page_size=1))["total"]

            # kill mid-run, at a moment the doomed consumer holds claimed messages
            wait_until(lambda: sum(f.done() for f in futures) >= FLOWS // 4, 120,
                       interval=0.02, what="a quarter of the flows created")
            victims = child_pids(consumers[0].proc.pid)
            doomed = wait_until(lambda: claimed_by(broker, victims), 60, interval=0.001,
                                what="the consumer holding messages")
            flight = in_flight(broker)
            done_at_kill = finished_count()
            sigkill(replicas[0])
            sigkill(consumers[0])
            killed_at = time.monotonic()
            time.sleep(1.0)
            replicas[0] = ButterflyService("xingqiao", xq_env, port=replicas[0].port).start()
            consumers[0] = ButterflyService("core", core_env, port=consumers[0].port).start()
            job_ids = [f.result() for f in futures]
            pool.shutdown()
            wait_until(lambda: finished_count() == FLOWS, 180, interval=0.2,
                       what="all flows finished")
            took = time.monotonic() - started
            recovered = time.monotonic() - killed_at
            client = XQ(replicas[0].url, url)
            clients.append(client)
            runs, extra, tasks_total, redelivered = 0, 0, 0, 0
            children: list[int] = []
            for job_id in job_ids:
                job = client.job(job_id)
                assert job["job_status"] == "finished", job
                for t in client.tasks(job_id).values():
                    assert t["task_status"] == "finished", t
                    tasks_total += 1
                    if t["task_map_over"] is not None:  # the map: no message of its own
                        assert [r["str_info"] for r in t["ret_data"]["results"]] == WORDS
                        continue
                    if t["task_subflow"] is not None:  # the sub-flow: its child's result
                        assert t["ret_data"]["str_info"] == "nested", t
                        children.append(t["child_job_id"])
                        continue
                    msg = broker.get(t["task_reqid"], t["task_cmd"])
                    assert msg is not None and msg.attempts >= 1
                    # an item's attempts count on from its map's expansion (x 1000)
                    attempts = msg.attempts + (t["task_run"] - 1) % 1000
                    runs += attempts
                    redelivered += t["task_reqid"] in doomed and msg.attempts > 1
                    extra += attempts - 1
            print(f"\ncrash test: {FLOWS} flows x {TASKS} tasks = {tasks_total} tasks, all "
                  f"finished in {took:.1f}s ({recovered:.1f}s after the kills); "
                  f"{done_at_kill} flows were done at the kills, {flight} messages in "
                  f"flight ({len(doomed)} claimed by the killed consumer, {redelivered} of "
                  f"them redelivered); handler runs {runs}, extra runs {extra}")
            assert tasks_total == FLOWS * TASKS
            assert extra <= flight
            # exactly one child per sub-flow task, all finished, each linked back
            leaves = client.ok(client.get("list_jobs", job_type="leaf", page_size=1000))
            assert leaves["total"] == FLOWS and len(set(children)) == FLOWS
            assert sorted(children) == sorted(j["job_id"] for j in leaves["list"])
            assert {j["job_status"] for j in leaves["list"]} == {"finished"}
        finally:
            for xq in clients:
                xq.close()  # before the replicas stop (see XQ.close)
            for service in replicas + consumers:
                service.stop()
