"""The queue protocol suite, run once per topology (redis, twemproxy, cluster)."""

from __future__ import annotations

import re
import threading
import time
import uuid

import pytest

from butterfly_common.mq import (
    Broker,
    InvalidTopic,
    Message,
    NoConsumer,
)
from butterfly_common.mq.broker import REGISTER_EVERY
from butterfly_common.mq.keys import TOPICS, id_key
from butterfly_common.testing import wait_until


def fresh_topic(broker: Broker, consumer: bool = True) -> str:
    name = f"/t{uuid.uuid4().hex[:10]}/h"
    if consumer:
        broker.heartbeat("w-test", [name])
    return name


def wait_lease_expired(broker: Broker, topic: str) -> None:
    """Wait (with a deadline) until every lease in ``started`` is in the past."""
    started = broker.client.zrange(broker.keys(topic).started, -1, -1, withscores=True)
    if started:
        deadline = started[0][1] / 1000.0 + 0.02
        wait_until(lambda: time.time() > deadline, 5, what="lease deadline")


def claim_one(broker: Broker, topic: str, timeout: float = 5.0) -> Message:
    return wait_until(lambda: (broker.claim(topic, "w1") or [None])[0], timeout,
                      what=f"a message on {topic}")


def test_publish_claim_complete_roundtrip(broker: Broker, topic: str) -> None:
    res = broker.publish(topic, {"a": 1, "名": "值"}, reqid="req-1", timeout=60,
                         max_retries=2)
    assert res.created and res.status == "queued"
    assert re.fullmatch(r"[0-9A-F]{24}", res.msg_id)
    queued = broker.get(res.msg_id)
    assert queued is not None and queued.status == "queued" and queued.topic == topic
    assert queued.created_at and queued.enqueued_at and queued.started_at is None
    (msg,) = broker.claim(topic, "w1", 5)
    assert (msg.id, msg.data, msg.status, msg.attempts) == (res.msg_id, {"a": 1, "名": "值"},
                                                           "started", 1)
    assert (msg.reqid, msg.max_retries, msg.timeout, msg.worker) == ("req-1", 2, 60.0, "w1")
    assert msg.token == 1 and msg.started_at
    assert broker.counts(topic) == {"queued": 0, "delayed": 0, "started": 1,
                                    "finished": 0, "failed": 0}
    assert broker.complete(msg, {"stat": "OK", "n": 3}, cost=0.25)
    done = broker.get(res.msg_id)
    assert done is not None
    assert (done.status, done.result, done.cost) == ("finished", {"stat": "OK", "n": 3}, 0.25)
    assert done.ended_at and done.ended_at >= done.started_at
    assert broker.counts(topic)["finished"] == 1
    assert broker.complete(msg, {"again": True}) is False  # already finished
    assert "token" not in done.to_dict()


def test_generated_ids_are_time_ordered(broker: Broker, topic: str) -> None:
    ids = [broker.publish(topic, {"i": i}).msg_id for i in range(5)]
    assert len(set(ids)) == 5
    assert [i[:12] for i in ids] == sorted(i[:12] for i in ids)


def test_idempotent_msg_id(broker: Broker, topic: str) -> None:
    first = broker.publish(topic, {"v": 1}, msg_id="job-42")
    again = broker.publish(topic, {"v": 2}, msg_id="job-42")
    assert (first.created, again.created) == (True, False)
    assert again.status == "queued" and again.msg_id == "job-42"
    assert broker.counts(topic)["queued"] == 1
    (msg,) = broker.claim(topic, "w1", 10)
    assert msg.data == {"v": 1}
    assert broker.publish(topic, {"v": 3}, msg_id="job-42").status == "started"
    assert broker.get("job-42").topic == topic
    # ids are unique per topic (issue 12, defect 7): the same id elsewhere is another
    # message; lookup by id alone names the latest, ``topic=`` reaches each one
    other = fresh_topic(broker)
    assert broker.publish(other, {"v": 4}, msg_id="job-42").created is True
    assert broker.get("job-42").topic == other
    assert broker.get("job-42", topic).data == {"v": 1}
    assert [m.data for m in broker.get_many([("job-42", topic), ("job-42", other)])] \
        == [{"v": 1}, {"v": 4}]


def test_delay(broker: Broker, topic: str) -> None:
    res = broker.publish(topic, {"x": 1}, delay=0.3)
    assert res.status == "delayed"
    assert broker.counts(topic)["delayed"] == 1
    assert broker.claim(topic, "w1") == []
    t0 = time.monotonic()
    msg = claim_one(broker, topic)
    assert msg.id == res.msg_id and time.monotonic() - t0 > 0.1
    assert msg.enqueued_at and msg.enqueued_at >= msg.created_at + 0.25


def test_at_front_ordering(broker: Broker, topic: str) -> None:
    a = broker.publish(topic, {}).msg_id
    b = broker.publish(topic, {}).msg_id
    c = broker.publish(topic, {}, at_front=True).msg_id
    assert [m.id for m in broker.claim(topic, "w1", 10)] == [c, a, b]


def test_claim_batch(broker: Broker, topic: str) -> None:
    ids = [broker.publish(topic, {"i": i}).msg_id for i in range(10)]
    batch = broker.claim(topic, "w1", 4)
    assert [m.id for m in batch] == ids[:4]
    assert all(m.attempts == 1 and m.status == "started" for m in batch)
    counts = broker.counts(topic)
    assert (counts["queued"], counts["started"]) == (6, 4)
    assert [m.id for m in broker.claim(topic, "w2", 100)] == ids[4:]
    assert broker.claim(topic, "w2", 100) == []


def test_late_completion_after_reap_is_ignored(broker: Broker, topic: str) -> None:
    mid = broker.publish(topic, {}, max_retries=3).msg_id
    (old,) = broker.claim(topic, "w-old")
    broker.publish(topic, {"later": True})
    wait_lease_expired(broker, topic)
    assert broker.reap(topic) == 1
    assert broker.get(mid).status == "queued"
    new = broker.claim(topic, "w-new")[0]  # reaped message went to the FRONT
    assert new.id == mid and new.token > old.token and new.attempts == 2
    assert broker.complete(old, {"stale": True}) is False
    assert broker.fail(old, "stale") == ""
    assert broker.extend(old, 10) is False
    assert broker.complete(new, {"fresh": True})
    assert broker.get(mid).result == {"fresh": True}
    assert broker.get(mid).worker == "w-new"


def test_retry_with_backoff_then_dead_letter(broker: Broker, topic: str) -> None:
    mid = broker.publish(topic, {}, max_retries=2).msg_id
    for attempt in (1, 2):
        msg = claim_one(broker, topic)
        assert msg.attempts == attempt
        assert broker.fail(msg, f"boom {attempt}") == "delayed"
        rec = broker.get(mid)
        assert rec.status == "delayed" and rec.error == f"boom {attempt}"
        assert broker.counts(topic)["delayed"] == 1
    msg = claim_one(broker, topic)
    assert msg.attempts == 3
    assert broker.fail(msg, "boom 3", result={"stat": "ERR"}, cost=0.5) == "failed"
    rec = broker.get(mid)
    assert (rec.status, rec.error, rec.result, rec.cost) == ("failed", "boom 3",
                                                             {"stat": "ERR"}, 0.5)
    assert broker.counts(topic) == {"queued": 0, "delayed": 0, "started": 0,
                                    "finished": 0, "failed": 1}


def test_backoff_grows_and_is_capped(mq_client) -> None:
    b = Broker(mq_client, min_backoff=1.0, max_backoff=8.0)
    for attempts, base in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (10, 8.0)]:
        assert base * 0.5 <= b.backoff(attempts) <= base


def test_fail_without_retry_dead_letters_at_once(broker: Broker, topic: str) -> None:
    mid = broker.publish(topic, {}, max_retries=5).msg_id
    (msg,) = broker.claim(topic, "w1")
    assert broker.fail(msg, "bad params", retry=False) == "failed"
    assert broker.get(mid).status == "failed"
    assert broker.counts(topic)["delayed"] == 0


def test_extend_is_fenced_and_capped_by_timeout(broker: Broker, topic: str) -> None:
    broker.publish(topic, {}, timeout=0.8)
    (msg,) = broker.claim(topic, "w1")
    started_key = broker.keys(topic).started
    first = broker.client.zscore(started_key, msg.id)
    assert first == pytest.approx(msg.started_at * 1000 + 300, abs=2)  # lease 0.3 s
    assert broker.extend(msg, 0.5)
    assert broker.client.zscore(started_key, msg.id) > first
    assert broker.extend(msg, 60)
    # capped at the timeout plus the settle grace (0.2 s in this fixture)
    assert broker.client.zscore(started_key, msg.id) == msg.started_at * 1000 + 800 + 200
    wait_until(lambda: not broker.extend(msg, 60), 5, what="timeout reached")
    wait_until(lambda: broker.reap(topic) == 1, 5, what="reaped after the grace")


def test_a_timed_out_attempt_is_not_reaped_while_its_failure_is_recorded(
        mq_client, topic: str) -> None:
    """Past ``timeout`` the consumer interrupts the handler and records the failure; a
    reaper running in between must not hand the message out again as lost."""
    slow = Broker(mq_client, lease=30.0, settle_grace=2.0)
    mid = slow.publish(topic, {}, timeout=0.2, max_retries=0).msg_id
    (msg,) = slow.claim(topic, "w1")
    wait_until(lambda: not slow.extend(msg), 5, what="timeout reached")
    assert slow.reap(topic) == 0  # inside the grace: still the consumer's
    assert slow.fail(msg, "timeout after 0.2s", retry=True) == "failed"
    record = slow.get(mid)
    assert (record.status, record.attempts) == ("failed", 1)


def test_reap_is_idempotent_under_concurrent_reapers(broker: Broker, topic: str) -> None:
    ids = {broker.publish(topic, {"i": i}, max_retries=1).msg_id for i in range(30)}
    assert len(broker.claim(topic, "w1", 30)) == 30
    wait_lease_expired(broker, topic)
    barrier = threading.Barrier(8)
    totals: list[int] = []

    def reaper() -> None:
        barrier.wait()
        totals.append(sum(broker.reap(topic) for _ in range(3)))

    threads = [threading.Thread(target=reaper) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert sum(totals) == 30
    queue = broker.client.lrange(broker.keys(topic).queue, 0, -1)
    assert sorted(queue) == sorted(ids)
    assert broker.counts(topic)["started"] == 0


def test_lost_leases_end_in_dead_letter(mq_client, topic: str) -> None:
    b = Broker(mq_client, lease=0.2, lost_grace=1)
    mid = b.publish(topic, {}, max_retries=0).msg_id
    for _ in range(2):
        assert b.claim(topic, "crashy")
        wait_lease_expired(b, topic)
        assert b.reap(topic) == 1
    rec = b.get(mid)
    assert rec.status == "failed" and "lease expired" in rec.error


def test_requeue_one_and_all(broker: Broker, topic: str) -> None:
    ids = [broker.publish(topic, {"i": i}).msg_id for i in range(3)]
    for msg in broker.claim(topic, "w1", 3):
        broker.fail(msg, "x", retry=False)
    assert broker.counts(topic)["failed"] == 3
    assert broker.requeue(topic, ids[1])
    assert broker.requeue(topic, ids[1]) is False
    rec = broker.get(ids[1])
    assert rec.status == "queued" and rec.attempts == 0
    assert broker.requeue_all(topic) == 2
    assert broker.counts(topic) == {"queued": 3, "delayed": 0, "started": 0, "finished": 0,
                                    "failed": 0}
    assert broker.client.ttl(broker.keys(topic).msg(ids[0])) == -1  # expiry removed


def test_requeue_all_in_batches(mq_client, topic: str) -> None:
    b = Broker(mq_client, batch=2)
    for _ in range(5):
        b.publish(topic, {})
    for msg in b.claim(topic, "w1", 5):
        b.fail(msg, "x", retry=False)
    assert b.requeue_all(topic, at_front=True) == 5
    assert b.counts(topic)["queued"] == 5


def test_delete(broker: Broker, topic: str) -> None:
    queued = broker.publish(topic, {}).msg_id
    started = broker.publish(topic, {}).msg_id
    assert broker.delete(topic, queued)
    assert broker.get(queued) is None
    assert broker.delete(topic, queued) is False
    (msg,) = broker.claim(topic, "w1")
    assert msg.id == started
    assert broker.delete(topic, started)
    assert broker.complete(msg, {}) is False
    assert broker.counts(topic) == dict.fromkeys(
        ("queued", "delayed", "started", "finished", "failed"), 0)


def test_purge(mq_client, topic: str) -> None:
    b = Broker(mq_client, batch=2)
    ids = [b.publish(topic, {"i": i}).msg_id for i in range(9)]
    msgs = b.claim(topic, "w1", 5)
    for m in msgs[:2]:
        b.complete(m, {})
    for m in msgs[2:]:
        b.fail(m, "x", retry=False)
    b.publish(topic, {}, delay=60)
    assert b.purge(topic, "failed") == 3
    assert b.purge(topic, "finished") == 2
    assert b.purge(topic, "queued") == 4
    assert b.get(ids[0]) is None and b.get(ids[8]) is None
    assert b.counts(topic)["delayed"] == 1
    b.publish(topic, {})
    assert b.purge(topic, "all") == 2
    assert sum(b.counts(topic).values()) == 0
    with pytest.raises(ValueError):
        b.purge(topic, "nope")


def test_list_pages_both_orders(broker: Broker, topic: str) -> None:
    ids = [broker.publish(topic, {"i": i}).msg_id for i in range(5)]
    total, page = broker.list(topic, "queued", 1, 2)
    assert total == 5 and [m.id for m in page] == [ids[4], ids[3]]
    assert [m.id for m in broker.list(topic, "queued", 2, 2)[1]] == [ids[2], ids[1]]
    assert [m.id for m in broker.list(topic, "queued", 3, 2)[1]] == [ids[0]]
    assert broker.list(topic, "queued", 4, 2) == (5, [])
    oldest = broker.list(topic, "queued", 1, 3, newest_first=False)[1]
    assert [m.id for m in oldest] == ids[:3]
    # finished: ordered by expiry; distinct result_ttl makes the order certain
    for i, msg in enumerate(broker.claim(topic, "w1", 3)):
        msg.result_ttl = 100.0 * (i + 1)
        broker.client.hset(broker.keys(topic).msg(msg.id), "result_ttl", 100_000 * (i + 1))
        assert broker.complete(msg, {"i": i})
    total, page = broker.list(topic, "finished", 1, 2)
    assert total == 3 and [m.id for m in page] == [ids[2], ids[1]]
    assert [m.id for m in broker.list(topic, "finished", 1, 2, False)[1]] == ids[:2]
    assert broker.list(topic, "failed") == (0, [])


def test_get_by_id_with_and_without_topic(broker: Broker, topic: str) -> None:
    mid = broker.publish(topic, {"k": "v"}, msg_id="lookup-1").msg_id
    assert broker.get(mid).data == {"k": "v"}
    assert broker.get(mid, topic).data == {"k": "v"}
    assert broker.get("nope-" + uuid.uuid4().hex) is None
    assert broker.get(mid, fresh_topic(broker, consumer=False)) is None


def test_no_consumer_refused_unless_forced(broker: Broker) -> None:
    lonely = fresh_topic(broker, consumer=False)
    with pytest.raises(NoConsumer):
        broker.publish(lonely, {})
    with pytest.raises(NoConsumer):
        broker.publish(lonely, {}, msg_id="refused-1")
    assert broker.get("refused-1") is None  # the index was rolled back
    other = fresh_topic(broker)
    assert broker.publish(other, {}, msg_id="refused-1").created  # id still free
    res = broker.publish(lonely, {"f": 1}, force=True)
    assert res.created and broker.get(res.msg_id).topic == lonely
    assert lonely in broker.topics()


def test_forced_publishes_register_their_topic_once_a_second(broker: Broker,
                                                              mq_client) -> None:
    """The registry never drops a topic: a forced publish repeats its ZADD at most once
    per REGISTER_EVERY, and a topic removed behind the broker's back comes back then."""
    lonely = fresh_topic(broker, consumer=False)
    broker.publish(lonely, {}, force=True)
    assert lonely in broker.topics()
    mq_client.zrem(TOPICS, lonely)  # as if Redis had lost it
    broker.publish(lonely, {}, force=True)
    assert lonely not in broker.topics()  # within the second: not written again
    broker._registered[lonely] -= REGISTER_EVERY
    broker.publish(lonely, {}, force=True)
    assert lonely in broker.topics()
    assert broker.counts(lonely)["queued"] == 3


def test_the_id_index_outlives_a_finished_record(mq_client) -> None:
    """A completion soon after the publish leaves the publish's index key alone (its TTL
    already covers the finished record); one that comes later than half the index slack
    refreshes it. Either way the index outlives the record."""
    for slack, refreshed in ((3600.0, False), (1.0, True)):
        b = Broker(mq_client, index_slack=slack)
        t = fresh_topic(b)
        mid = b.publish(t, {}, result_ttl=60).msg_id
        before = mq_client.pttl(id_key(mid))
        msg = b.claim(t, "w1", 1)[0]
        mq_client.pexpire(id_key(mid), before - 5_000)  # tell a refresh from no write
        assert b.complete(msg, {"stat": "OK"})
        after = mq_client.pttl(id_key(mid))
        assert (after > before - 5_000) is refreshed, (slack, before, after)
        assert after > mq_client.pttl(b.keys(t).msg(mid)) > 0
        assert b.get(mid).status == "finished"


def test_stale_heartbeat_means_no_consumer(mq_client) -> None:
    b = Broker(mq_client, heartbeat_ttl=0.5)
    t = fresh_topic(b)
    assert b.publish(t, {}).created

    def refused() -> bool:
        try:
            b.publish(t, {})
        except NoConsumer:
            return True
        return False

    wait_until(refused, 5, what="heartbeat going stale")


def test_release_hands_back_to_front_without_attempt(broker: Broker, topic: str) -> None:
    ids = [broker.publish(topic, {"i": i}).msg_id for i in range(4)]
    msgs = broker.claim(topic, "w1", 3)
    assert broker.release(msgs) == 3
    assert broker.release(msgs) == 0  # fenced: no longer started
    assert broker.counts(topic)["started"] == 0
    again = broker.claim(topic, "w2", 4)
    assert [m.id for m in again] == ids
    assert [m.attempts for m in again] == [1, 1, 1, 1]
    assert broker.complete(msgs[0], {}) is False


def test_result_and_failure_ttl_are_trimmed(broker: Broker, topic: str) -> None:
    done = broker.publish(topic, {}, result_ttl=0.2).msg_id
    dead = broker.publish(topic, {}, failure_ttl=0.2).msg_id
    m1, m2 = broker.claim(topic, "w1", 2)
    assert broker.complete(m1, {"ok": 1}) and broker.fail(m2, "x", retry=False) == "failed"
    assert broker.get(done).status == "finished"
    wait_until(lambda: broker.reap(topic) == 0 and broker.counts(topic)["finished"] == 0
               and broker.counts(topic)["failed"] == 0, 5, what="records trimmed")
    assert broker.get(done) is None and broker.get(dead) is None


def test_zero_result_ttl_keeps_nothing(broker: Broker, topic: str) -> None:
    mid = broker.publish(topic, {}, result_ttl=0).msg_id
    (msg,) = broker.claim(topic, "w1")
    assert broker.complete(msg, {"x": 1})
    assert broker.get(mid) is None and broker.counts(topic)["finished"] == 0


def test_heartbeat_workers_prune_unregister(broker: Broker) -> None:
    t1, t2 = fresh_topic(broker, False), fresh_topic(broker, False)
    wid = f"w-{uuid.uuid4().hex[:6]}"
    now = broker.heartbeat(wid, [t1, t2], {"host": "h1", "pid": 7}, ttl=0.5)
    assert now > 1e9
    rec = next(w for w in broker.workers() if w["id"] == wid)
    assert rec["alive"] and rec["topics"] == sorted([t1, t2])
    assert rec["info"] == {"host": "h1", "pid": 7} and rec["last_seen"] == pytest.approx(now)
    assert {t1, t2} <= set(broker.topics())
    assert broker.publish(t1, {}).created
    wait_until(lambda: not next(w for w in broker.workers() if w["id"] == wid)["alive"], 5,
               what="worker going stale")
    assert broker.prune_workers(0.5) >= 1
    assert wid not in {w["id"] for w in broker.workers()}
    assert broker.client.zscore(broker.keys(t1).workers, wid) is None
    broker.heartbeat("w-bye", [t2], {})
    assert broker.publish(t2, {}).created
    broker.unregister("w-bye", [t2])
    assert "w-bye" not in {w["id"] for w in broker.workers()}
    with pytest.raises(NoConsumer):
        broker.publish(t2, {})


def test_validation(broker: Broker, topic: str) -> None:
    for bad in ("", "a{b}", "with space", "x" * 300):
        with pytest.raises(InvalidTopic):
            broker.publish(bad, {}, force=True)
    with pytest.raises(TypeError):
        broker.publish(topic, [1, 2])  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        broker.publish(topic, {}, timeout=0)
    with pytest.raises(ValueError):
        broker.publish(topic, {}, msg_id="has space")


def test_get_many_by_ids_and_pairs_in_order(broker: Broker, topic: str) -> None:
    """Issue 12, defect 7: ``get_many`` reads many records in one pipelined trip; bare ids
    go through the best-effort index, pairs straight to their topic's shard."""
    ids = [broker.publish(topic, {"i": i}).msg_id for i in range(5)]
    got = broker.get_many([ids[3], (ids[0], topic), "0" * 24, (ids[4], topic), ids[1]])
    assert [m.data["i"] if m else None for m in got] == [3, 0, None, 4, 1]
    assert broker.get_many([]) == []
