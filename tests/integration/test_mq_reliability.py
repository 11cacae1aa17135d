"""10,000 messages, consumers SIGKILLed mid-flight and restarted: nothing lost.

Runs through nutcracker in front of two shards. Duplicated handler runs may only come
from messages that were in flight (claimed by the killed consumer) at a kill.
"""

from __future__ import annotations

import signal
import tempfile
import time
from pathlib import Path

import pytest
from reltest_workers import start_worker

from butterfly_common.mq import Broker
from butterfly_common.redis_client import make_redis
from butterfly_common.testing import Nutcracker, RedisServer, wait_until

TOPIC = "/rel/work"
TOTAL = 10_000
KILL_AT = (1500, 4000, 6500)


def in_flight_of(broker: Broker, pid: int) -> int:
    """Messages the process with ``pid`` holds (running or prefetched)."""
    total, started = broker.list(TOPIC, "started", page_size=1000)
    assert total <= 1000
    return sum(1 for m in started if f":{pid}:" in (m.worker or ""))


@pytest.fixture
def proxy():
    with RedisServer() as s1, RedisServer() as s2, Nutcracker([s1.port, s2.port]) as nut:
        yield nut


def test_sigkill_loses_nothing(proxy):
    client = make_redis(proxy.url)
    broker = Broker(client)
    runs_key = "reltest:{runs}"
    ids = [broker.publish(TOPIC, {"n": n}, max_retries=3, force=True).msg_id
                for n in range(TOTAL)]
    assert len(set(ids)) == TOTAL
    with tempfile.TemporaryDirectory() as logdir:
        workers = [start_worker(proxy.url, logdir, lease="2") for _ in range(3)]
        in_flight = []
        try:
            for i, threshold in enumerate(KILL_AT):
                wait_until(lambda t=threshold: broker.counts(TOPIC)["finished"] >= t, 120,
                           interval=0.005, what=f"{threshold} finished")
                victim = workers[i % len(workers)]
                victim.send_signal(signal.SIGKILL)
                victim.wait(10)
                in_flight.append(in_flight_of(broker, victim.pid))
                workers[i % len(workers)] = start_worker(proxy.url, logdir, lease="2")
            wait_until(lambda: broker.counts(TOPIC)["finished"] == TOTAL, 180, interval=0.1,
                       what="all finished")
        finally:
            for worker in workers:
                worker.terminate()
            for worker in workers:
                worker.wait(30)
    counts = broker.counts(TOPIC)
    runs = {int(k): int(v) for k, v in client.hgetall(runs_key).items()}
    extra = sum(runs.values()) - TOTAL
    print(f"\nreliability: {TOTAL} messages, {len(KILL_AT)} SIGKILLs, in flight at kills "
          f"{in_flight} (sum {sum(in_flight)}), handler runs {sum(runs.values())} "
          f"(extra {extra}), counts {counts}")
    assert counts == {"queued": 0, "delayed": 0, "started": 0, "finished": TOTAL, "failed": 0}
    assert sorted(runs) == list(range(TOTAL))  # every message ran at least once
    assert all(n > 0 for n in in_flight)  # each kill really caught messages mid-flight
    assert 0 <= extra <= sum(in_flight)
    assert all(broker.get(mid).status == "finished" for mid in ids[::97])


def test_frozen_consumer_messages_return_within_60s(proxy):
    """SIGSTOP a consumer holding messages (default 30 s lease, 10 min timeout): another
    consumer must finish them within 60 s; the frozen one's late completion is ignored."""
    broker = Broker(make_redis(proxy.url))
    with tempfile.TemporaryDirectory() as logdir:
        frozen = start_worker(proxy.url, logdir, lease="30")
        try:
            wait_until(lambda: broker.workers(), 30, what="first consumer up")
            ids = [broker.publish("/rel/slow", {"seconds": 3}, timeout=600).msg_id
                   for _ in range(3)]
            wait_until(lambda: broker.counts("/rel/slow")["started"] == 3, 30,
                       what="the first consumer holds them")
            frozen.send_signal(signal.SIGSTOP)
            frozen_at = time.monotonic()
            rescuer = start_worker(proxy.url, logdir, lease="30")
            try:
                wait_until(lambda: all(broker.get(i).status == "finished" for i in ids),
                           60, interval=0.5, what="messages back within 60 s")
                took = time.monotonic() - frozen_at
                results = [broker.get(i).result for i in ids]
                assert {r["pid"] for r in results} == {rescuer.pid}
                frozen.send_signal(signal.SIGCONT)  # wakes up and tries to complete them
                log = Path(logdir) / "reltest" / "acc.log"

                def fenced_lines() -> int:
                    return sum(1 for line in log.read_text().splitlines()
                               if line.split("\t")[1] == str(frozen.pid) and "fenced=1" in line)

                wait_until(lambda: fenced_lines() == len(ids), 30, what="late completions")
                assert all(broker.get(i).result["pid"] == rescuer.pid for i in ids)
                print(f"\nfrozen consumer: {len(ids)} messages finished elsewhere "
                      f"{took:.1f}s after the freeze")
            finally:
                rescuer.terminate()
                rescuer.wait(30)
        finally:
            frozen.send_signal(signal.SIGCONT)
            frozen.kill()
            frozen.wait(30)
