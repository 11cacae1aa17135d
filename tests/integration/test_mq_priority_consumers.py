"""Priorities with real consumers: two worker processes of 8 threads each drain a backlog
of three priorities, on plain Redis, through nutcracker with two shards and on a 3-node
Redis Cluster.

Claims are atomic and serial, so a claim never takes a lower priority while a higher one
is ready: every message of a higher priority was *claimed* (``started_at``, the server's
clock at the claim) no later than any message of a lower one. (Handler runs may still
overlap at the boundary: a consumer runs the messages of one claim side by side.)
"""

from __future__ import annotations

import signal
import tempfile
from collections.abc import Iterator

import pytest
from reltest_workers import start_worker, stop_workers

from butterfly_common.mq import Broker
from butterfly_common.redis_client import make_redis
from butterfly_common.testing import TOPOLOGIES, queue_store, wait_until

TOPIC = "/rel/work"
PLAN = {5: 300, 0: 300, -5: 100}  # priority -> messages


@pytest.fixture(params=TOPOLOGIES)
def url(request: pytest.FixtureRequest) -> Iterator[str]:
    with queue_store(request.param) as store:
        yield store


def test_consumers_take_every_higher_priority_first(url: str) -> None:
    broker = Broker(make_redis(url))
    total = sum(PLAN.values())
    ids: dict[int, list[str]] = {p: [] for p in PLAN}
    with tempfile.TemporaryDirectory() as logdir:
        workers = [start_worker(url, logdir) for _ in range(2)]
        try:
            wait_until(lambda: sum(1 for w in broker.workers() if w.get("alive")
                                   and TOPIC in w.get("topics", ())) == 2, 60,
                       what="both consumers up")
            # both frozen while the backlog is published, then both let go at once: they
            # compete for one backlog of three priorities
            for worker in workers:
                worker.send_signal(signal.SIGSTOP)
            for n in range(max(PLAN.values())):  # interleaved: publish order is no help
                for p, count in PLAN.items():
                    if n < count:
                        ids[p].append(broker.publish(TOPIC, {"n": n}, priority=p,
                                                     force=True).msg_id)
            assert broker.counts(TOPIC)["queued"] == total
            for worker in workers:
                worker.send_signal(signal.SIGCONT)
            wait_until(lambda: broker.counts(TOPIC)["finished"] == total, 120, interval=0.05,
                       what="every message finished")
        finally:
            stop_workers(workers)
    records = {p: broker.get_many([(i, TOPIC) for i in group]) for p, group in ids.items()}
    claimed = {p: [m.started_at for m in msgs if m is not None and m.started_at is not None]
               for p, msgs in records.items()}
    assert {p: len(times) for p, times in claimed.items()} == PLAN
    assert max(claimed[5]) <= min(claimed[0])
    assert max(claimed[0]) <= min(claimed[-5])
    assert broker.counts(TOPIC) == {"queued": 0, "delayed": 0, "started": 0,
                                    "finished": total, "failed": 0}
    assert broker.client.exists(broker.keys(TOPIC).prios) == 0
    by = {w.pid: sum(1 for msgs in records.values() for m in msgs
                     if m is not None and f":{w.pid}:" in m.worker) for w in workers}
    assert all(n > 0 for n in by.values()), by  # both processes took part
    assert sum(by.values()) == total
