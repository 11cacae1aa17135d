"""Batches (``mq/batch.py``): callbacks exactly once per batch, the record's counts, the
repair of ends no consumer told, cancel; once per topology (redis, twemproxy, cluster),
and with consumer processes SIGKILLed mid-batch."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from typing import Any

import pytest

from butterfly_common.mq import Broker
from butterfly_common.mq.batch import (
    OPEN_BATCHES,
    BatchKeys,
    BatchNotFound,
    callback_id,
    member_id,
)
from butterfly_common.testing import wait_until


def new_topic(broker: Broker, name: str = "handler") -> str:
    topic = f"/t{uuid.uuid4().hex[:10]}/{name}"
    broker.heartbeat("w-test", [topic], {"pid": 0})
    return topic


def run_all(broker: Broker, topics: list[str], stat: str = "OK",
            fail: set[int] | None = None) -> None:
    """A consumer in the test's thread: claim everything, end it, tell the batch."""
    for topic in topics:
        for m in broker.claim(topic, "w1", 1000):
            n = int(m.id.rsplit(".", 1)[1])
            if fail and n in fail:
                assert broker.fail(m, "boom", retry=False) == "failed"
                broker.batch_ended(m, "failed")
            else:
                assert broker.complete(m, {"stat": stat})
                broker.batch_ended(m, "ok" if stat == "OK" else "notok")


def callbacks(broker: Broker, topic: str) -> list[dict[str, Any]]:
    """Every message queued on a callback topic (each one a callback)."""
    return [m.data for m in broker.claim(topic, "cb", 1000)]


@pytest.fixture
def cb(broker: Broker) -> tuple[str, str]:
    return new_topic(broker, "on_success"), new_topic(broker, "on_complete")


def test_a_batch_over_two_topics_fires_each_callback_once(broker: Broker, topic: str,
                                                          cb: tuple[str, str]) -> None:
    other = new_topic(broker)
    items = [{"topic": topic if n % 2 else other, "data": {"n": n}} for n in range(20)]
    bid, results = broker.publish_batch(items, on_success=cb[0], on_complete=cb[1],
                                        data={"order": 7})
    assert all(r.created for r in results)
    assert [r.msg_id for r in results] == [member_id(bid, n) for n in range(20)]
    assert broker.get(results[0].msg_id, other).batch == bid
    b = broker.get_batch(bid)
    assert (b.state, b.total, b.pending, b.progress) == ("open", 20, 20, 0.0)
    assert b.callbacks == {"success": "waiting", "complete": "waiting"}
    run_all(broker, [topic, other])
    b = broker.get_batch(bid)
    assert (b.state, b.ok, b.pending, b.progress) == ("ended", 20, 0, 1.0)
    assert b.callbacks == {"success": "sent", "complete": "sent"}
    [success] = callbacks(broker, cb[0])
    [complete] = callbacks(broker, cb[1])
    assert success == {"batch_id": bid, "kind": "success", "state": "ended", "total": 20,
                       "ok": 20, "notok": 0, "failed": 0, "data": {"order": 7}}
    assert complete["kind"] == "complete"
    assert broker.get(callback_id(bid, "success"), cb[0]) is not None
    # telling the batch again (a redelivery, a repair) changes and fires nothing
    m = broker.get(results[0].msg_id, other)
    assert broker.batch_ended(m, "failed") == []
    assert broker.get_batch(bid).failed == 0
    assert callbacks(broker, cb[0]) == [] and callbacks(broker, cb[1]) == []
    assert not broker.client.zscore(OPEN_BATCHES, bid)


def test_a_failed_or_refused_message_fires_only_on_complete(broker: Broker, topic: str,
                                                             cb: tuple[str, str]) -> None:
    bid, _ = broker.publish_batch([{"topic": topic, "data": {}}] * 5, on_success=cb[0],
                                  on_complete=cb[1])
    run_all(broker, [topic], fail={3})
    b = broker.get_batch(bid)
    assert (b.ok, b.failed, b.state) == (4, 1, "ended")
    assert callbacks(broker, cb[0]) == []
    assert [c["failed"] for c in callbacks(broker, cb[1])] == [1]
    bid2, _ = broker.publish_batch([{"topic": topic, "data": {}}], on_success=cb[0],
                                   on_complete=cb[1])
    run_all(broker, [topic], stat="ERR_NOT_FOUND")  # an answered refusal: finished, not ok
    assert broker.get_batch(bid2).notok == 1
    assert callbacks(broker, cb[0]) == [] and len(callbacks(broker, cb[1])) == 1


def test_reading_a_batch_repairs_ends_nobody_told(broker: Broker, topic: str,
                                                  cb: tuple[str, str]) -> None:
    """A consumer killed between its complete and the batch script: the record's status
    is read instead, and the callback still comes once."""
    bid, _ = broker.publish_batch([{"topic": topic, "data": {}}] * 3,
                                  on_complete=cb[1])
    for m in broker.claim(topic, "w1", 10):
        assert broker.complete(m, {"stat": "OK"})  # and never batch_ended
    assert broker.get_batch(bid, repair=False).pending == 3
    b = broker.get_batch(bid)
    assert (b.ok, b.pending, b.callbacks["complete"]) == (3, 0, "sent")
    assert broker.get_batch(bid).callbacks["complete"] == "sent"
    assert len(callbacks(broker, cb[1])) == 1


def test_a_callback_due_but_not_sent_is_sent_once(broker: Broker, topic: str,
                                                  cb: tuple[str, str]) -> None:
    """A crash after the batch script said "due" but before the publish: the sweep
    publishes it; a crash after the publish but before "sent": the same id again, which
    the publish script refuses to queue twice."""
    bid, _ = broker.publish_batch([{"topic": topic, "data": {}}], on_complete=cb[1])
    [m] = broker.claim(topic, "w1", 1)
    assert broker.complete(m, {"stat": "OK"})
    record = BatchKeys.of(bid).record
    broker.client.hset(record, mapping={"ok": 1, "state": "open"})
    broker.client.hset(BatchKeys.of(bid).ended, f"{topic} {m.id}", "ok")
    # the publish of the first attempt went out, then the process died
    broker.publish(cb[1], {"first": 1}, msg_id=callback_id(bid, "complete"), force=True)
    assert broker.sweep_batches() >= 1
    assert broker.get_batch(bid, repair=False).callbacks["complete"] == "sent"
    assert callbacks(broker, cb[1]) == [{"first": 1}]


def test_cancel_dead_letters_the_queued_rest(broker: Broker, topic: str,
                                             cb: tuple[str, str]) -> None:
    bid, results = broker.publish_batch(
        [{"topic": topic, "data": {}, "delay": 60 if n == 4 else 0, "priority": n % 2}
         for n in range(5)], on_success=cb[0], on_complete=cb[1])
    [running] = broker.claim(topic, "w1", 1)
    b = broker.cancel_batch(bid)
    assert (b.state, b.failed, b.pending) == ("canceled", 4, 1)
    assert broker.counts(topic) == {"queued": 0, "delayed": 0, "started": 1,
                                    "finished": 0, "failed": 4}
    assert broker.get(results[4].msg_id, topic).error_kind == "canceled"
    assert callbacks(broker, cb[1]) == []
    assert broker.complete(running, {"stat": "OK"})
    broker.batch_ended(running, "ok")
    b = broker.get_batch(bid)
    assert (b.state, b.ok, b.failed, b.pending) == ("canceled", 1, 4, 0)
    assert b.ended_at is not None and b.canceled_at is not None
    assert callbacks(broker, cb[0]) == []
    assert [c["state"] for c in callbacks(broker, cb[1])] == ["canceled"]
    assert broker.cancel_batch(bid).failed == 4  # a second cancel changes nothing


def test_publish_batch_is_idempotent_by_batch_id(broker: Broker, topic: str) -> None:
    bid, first = broker.publish_batch([{"topic": topic, "data": {"n": 1}}] * 2,
                                      batch_id="order-42")
    again_id, again = broker.publish_batch([{"topic": topic, "data": {"n": 1}}] * 2,
                                           batch_id="order-42")
    assert bid == again_id == "order-42"
    assert [r.created for r in first] == [True, True]
    assert [r.created for r in again] == [False, False]
    assert broker.counts(topic)["queued"] == 2 and broker.get_batch(bid).total == 2
    total, page = broker.batches(1, 100)
    assert "order-42" in [b.id for b in page] and total >= 1


def test_a_message_without_consumer_counts_failed(broker: Broker, topic: str,
                                                  cb: tuple[str, str]) -> None:
    nobody = f"/t{uuid.uuid4().hex[:10]}/nobody"
    bid, results = broker.publish_batch([{"topic": topic, "data": {}},
                                         {"topic": nobody, "data": {}}], on_complete=cb[1])
    assert [r.status for r in results] == ["queued", "no_consumer"]
    assert broker.get_batch(bid).failed == 1
    run_all(broker, [topic])
    assert len(callbacks(broker, cb[1])) == 1


@pytest.mark.parametrize("bad", [
    {"messages": []},
    {"messages": [{"topic": "/a/b", "data": {}, "msg_id": "x"}]},
    {"messages": [{"topic": "/a/b"}]},
    {"messages": [{"topic": "/a/b", "data": {}}], "batch_id": "has space"},
    {"messages": [{"topic": "/a/b", "data": {}}], "on_success": "{bad}"},
])
def test_bad_batches_are_refused_before_anything_is_written(broker: Broker,
                                                            bad: dict[str, Any]) -> None:
    before = broker.client.zcard("bc:batches")
    with pytest.raises((ValueError, TypeError)):
        broker.publish_batch(**bad)
    assert broker.client.zcard("bc:batches") == before


def test_an_unknown_batch(broker: Broker) -> None:
    with pytest.raises(BatchNotFound):
        broker.get_batch("nope")
    with pytest.raises(BatchNotFound):
        broker.cancel_batch("nope")


def test_batch_keys_share_one_slot(broker: Broker) -> None:
    from redis.cluster import key_slot

    keys = BatchKeys.of("b1").all()
    assert len({key_slot(k.encode()) for k in keys}) == 1


# -- consumer processes, SIGKILLed mid-batch ------------------------------------------------

WORKER = """
import sys, threading, time
from redis.exceptions import ConnectionError, TimeoutError
from butterfly_common.mq import Broker
from butterfly_common.redis_client import make_redis
url, topics, threads = sys.argv[1], sys.argv[2].split(","), int(sys.argv[3])
# a short lease (a killed worker's claims come back soon), but never dead-lettered as lost
# when a loaded machine lets a live worker's lease lapse a few times
broker = Broker(make_redis(url), lease=1.0, settle_grace=0.1, lost_grace=1000)
def loop(n):
    while True:
        try:
            for topic in topics:
                broker.heartbeat(f"p{sys.argv[4]}", topics, {"pid": 0})
                for m in broker.claim(topic, f"p{sys.argv[4]}-{n}", 1):
                    time.sleep(0.05)
                    if m.data.get("fail"):
                        if broker.fail(m, "boom", retry=False) == "failed":
                            broker.batch_ended(m, "failed")
                    elif broker.complete(m, {"stat": "OK"}):
                        broker.batch_ended(m, "ok")
                broker.reap(topic)
        except (ConnectionError, TimeoutError):
            time.sleep(0.05)
ts = [threading.Thread(target=loop, args=(n,), daemon=True) for n in range(threads)]
for t in ts: t.start()
for t in ts: t.join()
"""


def start_worker(url: str, topics: list[str], n: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.Popen([sys.executable, "-c", WORKER, url, ",".join(topics), "4",
                             str(n)], env=env)


def test_consumers_sigkilled_mid_batch_fire_each_callback_once(
        broker: Broker, cb: tuple[str, str], mq_backend: Any) -> None:
    topics = [new_topic(broker), new_topic(broker)]
    good = [{"topic": topics[n % 2], "data": {"n": n}} for n in range(300)]
    bad = [*good[:20], {"topic": topics[0], "data": {"fail": True}}, *good[20:40]]
    workers = [start_worker(mq_backend.url, topics, n) for n in range(3)]
    try:
        bid, _ = broker.publish_batch(good, on_success=cb[0], on_complete=cb[1])
        bid2, _ = broker.publish_batch(bad, on_success=cb[0], on_complete=cb[1])
        def holding() -> set[str]:
            return {m.worker.split("-")[0] for t in topics
                    for m in broker.list(t, "started", 1, 100)[1]}

        # mid-batch, with claims in hand: both victims hold started messages
        wait_until(lambda: {"p0", "p1"} <= holding(), timeout=60, interval=0.005,
                   what="workers 0 and 1 to hold claims")
        os.kill(workers[0].pid, signal.SIGKILL)
        os.kill(workers[1].pid, signal.SIGKILL)
        workers[0].wait(10)
        workers[1].wait(10)
        workers += [start_worker(mq_backend.url, topics, 9)]
        # the maintenance pass, as baichuan runs it: a worker killed between its complete
        # and the batch script (it happens here, now and then) is repaired by the sweep

        def both_ended() -> bool:
            broker.sweep_batches()
            return all(broker.get_batch(b, repair=False).ended_at is not None
                       for b in (bid, bid2))

        wait_until(both_ended, timeout=90, interval=0.2, what="both batches to end")
    finally:
        for w in workers:
            w.kill()
            w.wait(10)
    broker.sweep_batches()
    b, b2 = broker.get_batch(bid), broker.get_batch(bid2)
    assert (b.state, b.ok, b.failed, b.pending) == ("ended", 300, 0, 0)
    assert (b2.ok, b2.failed, b2.pending) == (40, 1, 0)
    successes = callbacks(broker, cb[0])
    completes = callbacks(broker, cb[1])
    # the kill took claims with it: some messages ran again after their lease lapsed
    ids = [(member_id(bid, n), topics[n % 2]) for n in range(300)]
    ids += [(member_id(bid2, n), item["topic"]) for n, item in enumerate(bad)]
    assert any(m is not None and m.attempts > 1 for m in broker.get_many(ids))
    assert [c["batch_id"] for c in successes] == [bid]
    assert sorted(c["batch_id"] for c in completes) == sorted([bid, bid2])
    # once-keys: whatever sweeps or retries run later, nothing more is queued
    broker.sweep_batches()
    broker.get_batch(bid)
    assert callbacks(broker, cb[0]) == [] and callbacks(broker, cb[1]) == []
