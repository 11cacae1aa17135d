"""Concurrent waits are capped per worker: over BAICHUAN_MAX_WAITERS a wait is refused at
once (429 with x-reason) and /healthz keeps its threads (anonymous long waits used to
pin every thread of a worker: /healthz took 7 s)."""

from __future__ import annotations

import threading
import time

import requests
from baichuan_helpers import ADMIN, TOKEN, TOPIC

from butterfly_common.testing import ButterflyService, RedisServer, wait_until


def test_waits_over_the_cap_are_429_and_healthz_stays_fast():
    with RedisServer() as redis, ButterflyService("baichuan", {
            "BUTTERFLY_REDIS_URL": redis.url, "BUTTERFLY_WORKERS": "1",
            "BUTTERFLY_THREADS": "4", "BAICHUAN_MAX_WAITERS": "2",
            "BUTTERFLY_ADMIN_TOKEN": TOKEN}) as baichuan:
        url = baichuan.url
        msg_id = requests.post(f"{url}/baichuan/publish", timeout=10, json={
            "topic": TOPIC, "data": {}, "force": True}).json()["msg_id"]
        held: list[int] = []

        def long_wait() -> None:
            # a probe below may hold a slot for a moment: then take it again
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                r = requests.get(f"{url}/baichuan/wait", timeout=30,
                                 params={"msg_id": msg_id, "timeout": 8})
                if r.status_code != 429:
                    break
            held.append(r.status_code)

        holders = [threading.Thread(target=long_wait) for _ in range(2)]
        for t in holders:
            t.start()

        def refused_now() -> list[requests.Response] | None:
            r = requests.get(f"{url}/baichuan/wait", timeout=10,
                             params={"msg_id": msg_id, "timeout": 0})
            return [r] if r.status_code == 429 else None

        # (a Response of a 4xx is falsy: wrap it)
        [refused] = wait_until(refused_now, timeout=10, what="both waits holding their slots")
        assert refused.json()["stat"] == "ERR_TOO_MANY_WAITS"
        assert "BAICHUAN_MAX_WAITERS" in refused.headers["x-reason"]
        # ten more anonymous waits: all refused at once, none takes a thread for long
        answers: list[int] = []
        burst = [threading.Thread(target=lambda: answers.append(requests.get(
            f"{url}/baichuan/wait", params={"msg_id": msg_id, "timeout": 8},
            timeout=10).status_code)) for _ in range(10)]
        started = time.monotonic()
        for t in burst:
            t.start()
        for t in burst:
            t.join(timeout=10)
        assert answers == [429] * 10 and time.monotonic() - started < 5
        for _ in range(5):
            began = time.monotonic()
            assert requests.get(f"{url}/healthz", timeout=5).status_code == 200
            assert time.monotonic() - began < 1.0
        # the message ends: the holders' waits answer and give their slots back
        requests.post(f"{url}/baichuan/delete", headers=ADMIN, timeout=10,
                      json={"topic": TOPIC, "msg_id": msg_id})
        for t in holders:
            t.join(timeout=30)
        assert len(held) == 2 and 429 not in held
        after = requests.get(f"{url}/baichuan/wait", timeout=10,
                             params={"msg_id": msg_id, "timeout": 0})
        assert after.status_code == 404  # a slot again; the message is gone
