"""Crash test: 200 diamond flows (a -> b, c -> d -> e) over core's handlers, two xingqiao
replicas and two core consumers behind nutcracker, on MariaDB. One replica and one consumer
are SIGKILLed mid-run and restarted: every flow finishes, every task ran at least once, and
extra runs are bounded by the messages in flight at the kills."""

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
TOPICS = ("/demo_api/hello", "/demo_api/ping", "/demo_api/collect")
DIAMOND = [
    {"label": "a", "cmd": "/demo_api/hello", "params": {"str_info": "crash"}},
    {"label": "b", "cmd": "/demo_api/ping", "dependencies": ["a"]},
    {"label": "c", "cmd": "/demo_api/hello", "requires": ["str_info"], "dependencies": ["a"]},
    {"label": "d", "cmd": "/demo_api/collect", "requires": ["all_taskdata"],
     "dependencies": ["b", "c"]},
    {"label": "e", "cmd": "/demo_api/ping", "dependencies": ["d"], "is_save": True},
]


def sigkill(service: ButterflyService) -> None:
    """A crash: the gunicorn workers and the master, all at once, no cleanup."""
    assert service.proc is not None
    for pid in child_pids(service.proc.pid):
        os.kill(pid, signal.SIGKILL)
    service.kill()


def in_flight(broker: Broker) -> int:
    return sum(broker.counts(t)["started"] for t in TOPICS) \
        + broker.counts("/xingqiao/task_notice")["started"]


def test_crash_two_replicas_two_consumers():
    with RedisServer() as s1, RedisServer() as s2, Nutcracker([s1.port, s2.port]) as proxy, \
            mariadb_database("bf_xq_crash") as db_url:
        url = proxy.url
        xq_env = {**_env(url, {"BUTTERFLY_CONSUME": "1", "BUTTERFLY_DB_URL": db_url})}
        core_env = _env(url, {"BUTTERFLY_CONSUME": "1"})
        consumers = [ButterflyService("core", core_env).start() for _ in range(2)]
        replicas = [ButterflyService("xingqiao", xq_env).start() for _ in range(2)]
        broker = Broker(make_redis(url))
        try:
            clients = [XQ(r.url, url) for r in replicas]
            clients[0].flow_type("diamond", DIAMOND)
            started = time.monotonic()
            with ThreadPoolExecutor(8) as pool:
                job_ids = list(pool.map(lambda i: clients[i % 2].create("diamond"),
                                        range(FLOWS)))

            def finished_count() -> int:
                return clients[1].ok(clients[1].get("list_jobs", job_status="finished",
                                                    page_size=1))["total"]

            wait_until(lambda: finished_count() >= FLOWS // 5, 120, interval=0.05,
                       what="a fifth of the flows finished")
            flight = in_flight(broker)
            done_at_kill = finished_count()
            sigkill(replicas[0])
            sigkill(consumers[0])
            killed_at = time.monotonic()
            time.sleep(1.0)
            replicas[0] = ButterflyService("xingqiao", xq_env, port=replicas[0].port).start()
            consumers[0] = ButterflyService("core", core_env, port=consumers[0].port).start()
            wait_until(lambda: finished_count() == FLOWS, 180, interval=0.2,
                       what="all flows finished")
            took = time.monotonic() - started
            recovered = time.monotonic() - killed_at
            client = XQ(replicas[0].url, url)
            runs, extra, tasks_total = 0, 0, 0
            for job_id in job_ids:
                job = client.job(job_id)
                assert job["job_status"] == "finished", job
                for t in client.tasks(job_id).values():
                    assert t["task_status"] == "finished", t
                    msg = broker.get(t["task_reqid"], t["task_cmd"])
                    assert msg is not None and msg.attempts >= 1
                    attempts = msg.attempts + (t["task_run"] - 1)
                    runs += attempts
                    extra += attempts - 1
                    tasks_total += 1
            print(f"\ncrash test: {FLOWS} flows x 5 tasks = {tasks_total} tasks, all "
                  f"finished in {took:.1f}s ({recovered:.1f}s after the kills); "
                  f"{done_at_kill} flows were done at the kills, {flight} messages in "
                  f"flight; handler runs {runs}, extra runs {extra}")
            assert tasks_total == FLOWS * 5
            assert extra <= flight
        finally:
            for service in replicas + consumers:
                service.stop()
