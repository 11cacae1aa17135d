"""Periodic loops under a real ``butterfly serve`` (gunicorn, two workers): one worker holds
xingqiao's sweep lease, the loops show in ``/readyz?detail=1`` and in the multiprocess
``/metrics``, and a graceful stop (SIGTERM -> worker_exit) releases the lease instead of
leaving it to expire."""

from __future__ import annotations

import time

import requests

from butterfly_common.coordination import Lease
from butterfly_common.redis_client import make_redis
from butterfly_common.testing import ButterflyService, RedisServer, wait_until


def sample(text: str, name: str, loop: str) -> float | None:
    prefix = f'{name}{{loop="{loop}"}} '
    for line in text.splitlines():
        if line.startswith(prefix):
            return float(line[len(prefix):])
    return None


def test_loops_report_state_hold_one_lease_and_release_it_on_shutdown():
    with RedisServer() as server:
        redis = make_redis(server.url)
        lease = Lease(redis, "xq:sweep", 5.0)
        started = time.time()
        service = ButterflyService("xingqiao", {"BUTTERFLY_REDIS_URL": server.url,
                                                "BUTTERFLY_WORKERS": "2",
                                                "XINGQIAO_SWEEP_INTERVAL": "0.2"})
        with service:
            wait_until(lambda: requests.get(f"{service.url}/readyz", timeout=2).ok, 30,
                       what="xingqiao ready")
            holder = wait_until(lease.holder, 10, what="a worker holds the sweep lease")

            def metrics() -> str:
                return requests.get(f"{service.url}/metrics", timeout=5).text

            wait_until(lambda: (sample(metrics(), "butterfly_periodic_last_success_timestamp",
                                       "xq-sweep") or 0) > started, 10,
                       what="a sweep recorded in /metrics")
            text = metrics()
            # summed over the live workers: exactly one of the two holds the lease
            assert sample(text, "butterfly_periodic_lease_held", "xq-sweep") == 1
            assert sample(text, "butterfly_periodic_failures_total", "xq-sweep") == 0
            assert sample(text, "butterfly_periodic_consecutive_failures", "xq-follow") == 0

            plain = requests.get(f"{service.url}/readyz", timeout=5).json()
            assert plain == {"stat": "OK", "redis": "ok", "db": "ok", "queue": "ok"}
            detail = requests.get(f"{service.url}/readyz", params={"detail": "1"},
                                  timeout=5).json()
            assert detail["stat"] == "OK" and set(detail["loops"]) == {"xq-follow", "xq-sweep"}
            sweep = detail["loops"]["xq-sweep"]
            assert sweep["running"] and sweep["consecutive_failures"] == 0
            assert isinstance(sweep["holds_lease"], bool)
            assert detail["loops"]["xq-follow"]["holds_lease"] is None
            assert lease.holder() == holder  # renewed, never handed around
        # SIGTERM: worker_exit stopped the loops, and whoever held the lease last (the
        # other worker may take it for a moment while the first stops) gave it back
        assert lease.holder() is None
        redis.close()
