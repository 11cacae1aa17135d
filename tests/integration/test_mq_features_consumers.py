"""Deduplication and publish_many with real consumers (two worker processes of 8
threads), on plain Redis, through nutcracker with two shards and on a 3-node Redis Cluster.

- ``until_done``: a publisher hammers one key while consumers run its messages: the runs
  of that key never overlap (a new message is only created once the one before ended).
- ``debounce`` with ``extend``: a burst of publishes runs once, with the last data.
- ``throttle``: a burst runs once, with the first data.
- ``publish_many``: 3000 messages, a third of them sent twice under the same ``msg_id``,
  each runs exactly once.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from itertools import pairwise

import pytest
from reltest_workers import start_worker, stop_workers

from butterfly_common.mq import Broker
from butterfly_common.redis_client import make_redis
from butterfly_common.testing import Nutcracker, RedisClusterServers, RedisServer, wait_until

SLOW = "/rel/slow"
WORK = "/rel/work"
RUNS = "reltest:{runs}"  # reltest_app's work handler counts its runs per n there


@pytest.fixture(params=["redis", "twemproxy", "cluster"])
def fleet(request: pytest.FixtureRequest) -> Iterator[Broker]:
    """A topology and two consumer processes serving reltest_app, both up."""
    with tempfile.TemporaryDirectory() as logdir:
        if request.param == "redis":
            servers = [RedisServer().start()]
            url = servers[0].url
            proxy = None
        elif request.param == "twemproxy":
            servers = [RedisServer().start(), RedisServer().start()]
            proxy = Nutcracker([s.port for s in servers]).start()
            url = proxy.url
        else:
            servers = [RedisClusterServers(3).start()]  # type: ignore[list-item]
            url = servers[0].url
            proxy = None
        workers = [start_worker(url, logdir, max_idle="0.05") for _ in range(2)]
        broker = Broker(make_redis(url))
        try:
            wait_until(lambda: sum(1 for w in broker.workers() if w.get("alive")
                                   and WORK in w.get("topics", ())) == 2, 60,
                       what="both consumers up")
            yield broker
        finally:
            stop_workers(workers)
            if proxy is not None:
                proxy.stop()
            for server in servers:
                server.stop()


def test_until_done_never_runs_one_key_twice_at_once(fleet: Broker) -> None:
    broker = fleet
    created: list[str] = []
    answers = {"new": 0, "duplicate": 0}
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        res = broker.publish(SLOW, {"seconds": 0.1}, dedup_key="report-42")
        assert res.dedup is not None
        answers[res.dedup["outcome"]] += 1
        if res.created:
            created.append(res.msg_id)
        else:
            assert res.msg_id == created[-1]  # the standing one is the latest created
        time.sleep(0.005)  # a publisher in a loop, not a spin
    wait_until(lambda: all(m is not None and m.status == "finished"
                           for m in broker.get_many([(i, SLOW) for i in created])), 30,
               what="every created message finished")
    runs = sorted((m.started_at, m.ended_at) for m in broker.get_many([(i, SLOW) for i in created])
                  if m is not None and m.started_at is not None and m.ended_at is not None)
    assert len(runs) == len(created) >= 3 and answers["duplicate"] > len(created)
    for (_, ended), (started, _) in pairwise(runs):
        assert started >= ended  # one at a time: the next began after the last ended


def test_debounce_burst_runs_once_with_the_last_data(fleet: Broker) -> None:
    broker = fleet
    outcomes = [broker.publish(WORK, {"n": n}, dedup_key="burst", dedup_mode="debounce",
                               dedup_ttl=2.0, dedup_extend=True, delay=2.0).dedup["outcome"]
                for n in range(20)]
    assert outcomes == ["new"] + ["replaced"] * 19
    wait_until(lambda: broker.counts(WORK)["finished"] == 1, 30, what="the one run")
    assert broker.client.hgetall(RUNS) == {"19": "1"}
    assert broker.counts(WORK) == {"queued": 0, "delayed": 0, "started": 0, "finished": 1,
                                   "failed": 0}


def test_throttle_burst_runs_once_with_the_first_data(fleet: Broker) -> None:
    broker = fleet
    results = [broker.publish(WORK, {"n": 100 + n}, dedup_key="tick", dedup_mode="throttle",
                              dedup_ttl=30) for n in range(20)]
    assert [r.dedup["outcome"] for r in results] == ["new"] + ["throttled"] * 19
    assert {r.msg_id for r in results} == {results[0].msg_id}
    wait_until(lambda: broker.counts(WORK)["finished"] == 1, 30, what="the one run")
    assert broker.client.hgetall(RUNS) == {"100": "1"}


def test_publish_many_runs_each_message_once(fleet: Broker) -> None:
    broker = fleet
    items = [{"topic": WORK, "data": {"n": n}, "msg_id": f"bulk-{n}"} for n in range(3000)]
    first = broker.publish_many(items[:2000])
    second = broker.publish_many(items[1000:])  # 1000..1999 again: idempotent by id
    assert all(r.created for r in first)
    assert [r.created for r in second] == [False] * 1000 + [True] * 1000
    wait_until(lambda: broker.counts(WORK)["finished"] == 3000, 60, interval=0.05,
               what="every message finished")
    runs = broker.client.hgetall(RUNS)
    assert len(runs) == 3000 and set(runs.values()) == {"1"}
