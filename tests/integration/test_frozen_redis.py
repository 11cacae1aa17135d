"""A frozen Redis (SIGSTOP) must not stall the fleet (issue 12, defect 6).

Real processes: one redis-server, core consuming from it and baichuan in front, both under
gunicorn. With Redis stopped and 32 publishes in flight, ``/healthz`` of both answers in
under a second, every publish answers (503 ERR_MQ_UNAVAILABLE) in under five, and after
SIGCONT a publish + wait goes through without restarting anything.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
import requests

from butterfly_common.testing import ButterflyService, RedisServer, wait_until

TOPIC = "/demo_api/hello"


@pytest.fixture(scope="module")
def fleet():
    with RedisServer() as redis_server:
        env = {"BUTTERFLY_REDIS_URL": redis_server.url, "BUTTERFLY_CONSUME_MAX_IDLE": "0.1"}
        core = ButterflyService("core", {**env, "BUTTERFLY_CONSUME": "1"})
        baichuan = ButterflyService("baichuan", env)
        with core, baichuan:
            wait_until(lambda: publish(baichuan, "warm").ok, 30, what="core consuming")
            yield redis_server, core, baichuan


def publish(baichuan: ButterflyService, text: str, timeout: float = 10) -> requests.Response:
    return requests.post(f"{baichuan.url}/baichuan/publish", timeout=timeout,
                         json={"topic": TOPIC, "data": {"str_info": text}})


def timed_get(url: str) -> tuple[float, int]:
    started = time.monotonic()
    status = requests.get(url, timeout=10).status_code
    return time.monotonic() - started, status


def test_frozen_redis_healthz_fast_publishes_503_then_resume(fleet):
    redis_server, core, baichuan = fleet
    pid = redis_server.proc.pid
    results: list[tuple[float, int, str]] = []

    def one(i: int) -> None:
        started = time.monotonic()
        try:
            reply = publish(baichuan, f"frozen-{i}")
            results.append((time.monotonic() - started, reply.status_code,
                            reply.headers.get("x-reason", "")))
        except requests.RequestException as exc:
            results.append((time.monotonic() - started, 0, repr(exc)))

    os.kill(pid, signal.SIGSTOP)
    try:
        threads = [threading.Thread(target=one, args=(i,)) for i in range(32)]
        for thread in threads:
            thread.start()
        time.sleep(0.1)  # the publishes are on their way
        probes = [timed_get(f"{service.url}/healthz") for service in (core, baichuan)
                  for _ in range(3)]
        for thread in threads:
            thread.join(30)
        assert all(status == 200 for _, status in probes), probes
        assert max(cost for cost, _ in probes) < 1.0, probes
        assert len(results) == 32
        assert max(cost for cost, _, _ in results) < 5.0, sorted(results)[-3:]
        assert {status for _, status, _ in results} == {503}, results
        assert all("queue store unavailable" in reason for _, _, reason in results)
        ready = requests.get(f"{core.url}/readyz", timeout=10)
        assert ready.status_code == 503 and "redis" in ready.headers["x-reason"]
    finally:
        os.kill(pid, signal.SIGCONT)

    def round_trip() -> bool:
        reply = publish(baichuan, "after", timeout=5)
        if reply.status_code != 200:
            return False
        done = requests.get(f"{baichuan.url}/baichuan/wait", timeout=20, params={
            "msg_id": reply.json()["msg_id"], "timeout": 10}).json()
        return done.get("status") == "finished"

    wait_until(round_trip, 30, interval=0.2, what="publish + wait after SIGCONT")
    assert requests.get(f"{core.url}/readyz", timeout=10).status_code == 200
