"""Per-topic limits (``max_running``, ``rate`` per window), run once per topology (redis,
twemproxy, cluster): enforced by the claim script fleet-wide, every way a started message
ends frees its slot, clearing restores the plain path.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections import Counter
from typing import Any

import pytest

from butterfly_common.mq import Broker, Limits
from butterfly_common.mq.limits import MAX_LIMIT
from butterfly_common.testing import wait_until


def publish_n(broker: Broker, topic: str, n: int) -> list[str]:
    return [broker.publish(topic, {"n": i}).msg_id for i in range(n)]


class Sampler:
    """Reads the topic's running count (the ``started`` ZSET) over and over in a thread
    while consumers work; ``peak`` is the largest seen."""

    def __init__(self, broker: Broker, topic: str) -> None:
        self.client, self.key = broker.client, broker.keys(topic).started
        self.peak = self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, int(self.client.zcard(self.key)))
            self.samples += 1

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(10)


def run_consumers(broker: Broker, topic: str, total: int, threads: int = 6,
                  batch: int = 3, work: float = 0.005, deadline: float = 60.0) -> int:
    """``threads`` consumer threads claim up to ``batch``, hold each claimed message
    ``work`` s, then complete it, until ``total`` are done; returns the largest number
    held at once in this process (counted between claim and complete)."""
    lock = threading.Lock()
    state = {"held": 0, "peak": 0, "done": 0}
    end = time.monotonic() + deadline

    def loop(n: int) -> None:
        while time.monotonic() < end:
            with lock:
                if state["done"] >= total:
                    return
            msgs = broker.claim(topic, f"w{n}", batch)
            if not msgs:
                time.sleep(0.002)  # a polling consumer's idle pause, not a wait for a result
                continue
            with lock:
                state["held"] += len(msgs)
                state["peak"] = max(state["peak"], state["held"])
            time.sleep(work)  # the "handler"
            for m in msgs:
                with lock:
                    state["held"] -= 1
                assert broker.complete(m, {"ok": 1})
            with lock:
                state["done"] += len(msgs)

    workers = [threading.Thread(target=loop, args=(n,)) for n in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(deadline + 5)
    assert state["done"] == total, state
    return state["peak"]


# -- max_running ------------------------------------------------------------------------

def test_max_running_holds_across_consumer_threads(broker: Broker, topic: str) -> None:
    broker.set_limits(topic, max_running=3)
    publish_n(broker, topic, 60)
    with Sampler(broker, topic) as sampler:
        peak = run_consumers(broker, topic, 60, threads=6, batch=3)
    assert sampler.samples > 10
    assert sampler.peak <= 3 and peak <= 3
    assert peak >= 2  # the limit is a ceiling, not a lock: several ran at once
    assert broker.counts(topic)["finished"] == 60
    state = broker.limits(topic)
    assert (state.max_running, state.running) == (3, 0)
    assert state.held > 0 and state.held_at is not None  # six threads wanted more than 3


def test_a_claim_takes_only_the_room_left(broker: Broker, topic: str) -> None:
    publish_n(broker, topic, 10)
    first = broker.claim(topic, "w1", 2)  # before the limit: already running
    broker.set_limits(topic, max_running=5)
    assert len(broker.claim(topic, "w1", 10)) == 3
    assert broker.claim(topic, "w2", 10) == []
    state = broker.limits(topic)
    assert (state.running, state.held) == (5, 2)
    assert broker.counts(topic)["queued"] == 5  # held back: still queued, never claimed
    assert broker.complete(first[0])
    assert len(broker.claim(topic, "w2", 10)) == 1


def test_no_held_count_when_nothing_was_ready(broker: Broker, topic: str) -> None:
    broker.set_limits(topic, max_running=1)
    publish_n(broker, topic, 1)
    assert len(broker.claim(topic, "w1", 5)) == 1
    assert broker.claim(topic, "w1", 5) == []
    assert broker.limits(topic).held == 0  # the queue was empty: a limit held nothing back


@pytest.mark.parametrize("end", ["complete", "fail_retry", "fail_dead", "release",
                                 "delete", "reap", "purge"])
def test_every_end_of_a_started_message_frees_its_slot(broker: Broker, topic: str,
                                                       end: str) -> None:
    broker.set_limits(topic, max_running=1)
    first, second = publish_n(broker, topic, 2)
    (msg,) = broker.claim(topic, "w1", 5)
    assert msg.id == first and broker.claim(topic, "w1", 5) == []
    if end == "complete":
        assert broker.complete(msg)
    elif end == "fail_retry":
        assert broker.fail(msg, "boom") in ("delayed", "failed")
    elif end == "fail_dead":
        assert broker.fail(msg, "boom", retry=False) == "failed"
    elif end == "release":
        assert broker.release([msg]) == 1
    elif end == "delete":
        assert broker.delete(topic, msg.id)
    elif end == "reap":  # the lease (0.3 s) runs out: lost, back to the queue
        wait_until(lambda: broker.reap(topic), timeout=10, what="lease expiry")
    elif end == "purge":
        assert broker.purge(topic, "started") == 1
    assert broker.limits(topic).running == 0
    (nxt,) = broker.claim(topic, "w2", 5)
    assert nxt.id in (first, second)


def test_the_room_goes_to_the_highest_priority(broker: Broker, topic: str) -> None:
    broker.set_limits(topic, max_running=2)
    low = broker.publish(topic, {}, priority=-5).msg_id
    plain = broker.publish(topic, {}).msg_id
    high = broker.publish(topic, {}, priority=9).msg_id
    assert [m.id for m in broker.claim(topic, "w1", 3)] == [high, plain]
    assert broker.list(topic, "queued")[0] == 1 and broker.get(low, topic).status == "queued"


# -- rate -----------------------------------------------------------------------------

def test_rate_caps_claims_per_fixed_window(broker: Broker, topic: str) -> None:
    broker.set_limits(topic, rate=3, rate_window=0.2)
    publish_n(broker, topic, 12)
    started: list[float] = []

    def drained() -> bool:
        for m in broker.claim(topic, "w1", 10):
            started.append(m.started_at or 0.0)
            broker.complete(m)
        return len(started) == 12

    wait_until(drained, timeout=20, interval=0.01, what="every message claimed")
    per_window = Counter(round(t * 1000) // 200 for t in started)  # the server's clock
    assert max(per_window.values()) <= 3, per_window
    assert len(per_window) >= 4
    assert broker.limits(topic).held > 0


def test_both_limits_at_once(broker: Broker, topic: str) -> None:
    broker.set_limits(topic, max_running=2, rate=100, rate_window=60)
    publish_n(broker, topic, 5)
    assert len(broker.claim(topic, "w1", 5)) == 2
    state = broker.limits(topic)
    assert (state.running, state.window_used, state.rate_window) == (2, 2, 60.0)


# -- set / clear ------------------------------------------------------------------------

def test_clearing_restores_the_plain_path(broker: Broker, topic: str) -> None:
    k = broker.keys(topic)
    publish_n(broker, topic, 6)
    broker.set_limits(topic, max_running=1, set_by="alice")
    assert len(broker.claim(topic, "w1", 6)) == 1
    state = broker.clear_limits(topic)
    assert state == Limits(running=1)
    assert broker.client.exists(k.limits) == 0
    assert len(broker.claim(topic, "w1", 6)) == 5
    assert broker.client.exists(k.limits) == 0  # an unlimited claim writes nothing there


def test_setting_replaces_the_whole_set(broker: Broker, topic: str) -> None:
    state = broker.set_limits(topic, max_running=4, rate=10, set_by="alice")
    assert (state.max_running, state.rate, state.rate_window) == (4, 10, 1.0)
    assert state.set_by == "alice" and state.set_at is not None and state.limited
    state = broker.set_limits(topic, rate=7, rate_window=2.5)
    assert (state.max_running, state.rate, state.rate_window) == (None, 7, 2.5)
    assert broker.limits(topic) == state


def test_an_unlimited_topic_has_no_limits_key(broker: Broker, topic: str) -> None:
    publish_n(broker, topic, 2)
    assert len(broker.claim(topic, "w1", 5)) == 2
    assert broker.client.exists(broker.keys(topic).limits) == 0
    assert broker.limits(topic) == Limits(running=2)
    assert not broker.limits(topic).limited


@pytest.mark.parametrize("args", [
    {"max_running": 0}, {"max_running": -1}, {"max_running": 1.5}, {"max_running": True},
    {"max_running": "3"}, {"max_running": MAX_LIMIT + 1}, {"rate": 0},
    {"rate": 10**30}, {"rate": 5, "rate_window": 0}, {"rate": 5, "rate_window": -1},
    {"rate": 5, "rate_window": float("nan")}, {"rate": 5, "rate_window": float("inf")},
    {"rate": 5, "rate_window": 0.0001}, {"rate": 5, "rate_window": 86401},
    {"rate_window": 1.0}])
def test_bad_limits_are_refused(broker: Broker, topic: str, args: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        broker.set_limits(topic, **args)
    assert broker.client.exists(broker.keys(topic).limits) == 0


# -- several processes ------------------------------------------------------------------

CHILD = """
import sys, threading, time
from butterfly_common.mq import Broker
from butterfly_common.redis_client import make_redis
url, topic, total, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
broker = Broker(make_redis(url), lease=30.0)
done_key = broker.keys(topic).finished
end = time.monotonic() + 60
def loop(n):
    while time.monotonic() < end and broker.client.zcard(done_key) < total:
        msgs = broker.claim(topic, f"p{sys.argv[5]}-{n}", 2)
        if not msgs:
            time.sleep(0.002)
            continue
        time.sleep(0.005)
        for m in msgs:
            broker.complete(m, {"ok": 1})
ts = [threading.Thread(target=loop, args=(n,)) for n in range(threads)]
for t in ts: t.start()
for t in ts: t.join()
"""


def test_max_running_holds_across_processes(broker: Broker, topic: str,
                                            mq_backend: Any) -> None:
    total, limit = 120, 4
    broker.set_limits(topic, max_running=limit)
    publish_n(broker, topic, total)
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    with Sampler(broker, topic) as sampler:
        procs = [subprocess.Popen([sys.executable, "-c", CHILD, mq_backend.url, topic,
                                   str(total), "4", str(p)], env=env)
                 for p in range(4)]
        try:
            wait_until(lambda: broker.counts(topic)["finished"] == total, timeout=90,
                       interval=0.05, what="every message finished")
        finally:
            for p in procs:
                assert p.wait(60) == 0
    assert sampler.samples > 10
    assert sampler.peak <= limit
    assert broker.limits(topic).held > 0


# -- the framework's consumer -------------------------------------------------------------

def test_consumers_respect_max_running(sample_consumers: Any) -> None:
    """Two real consumers of 4 threads each (redis, twemproxy): never more than the limit
    running, and every message still runs."""
    broker, start, _ = sample_consumers
    topic = "/jobs/slow"
    broker.clear_limits(topic)
    broker.purge(topic, "all")
    broker.set_limits(topic, max_running=2)
    try:
        start(threads=4)
        start(threads=4)
        ids = [broker.publish(topic, {"seconds": 0.03}).msg_id for _ in range(16)]
        with Sampler(broker, topic) as sampler:
            wait_until(lambda: all(m and m.status == "finished"
                                   for m in broker.get_many([(i, topic) for i in ids])),
                       30, what="every message finished")
        assert sampler.samples > 10 and sampler.peak <= 2
        assert broker.limits(topic).held > 0
    finally:
        broker.clear_limits(topic)
