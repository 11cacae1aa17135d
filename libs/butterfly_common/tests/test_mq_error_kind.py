"""The record's ``error_kind``: why the latest attempt failed, from a closed set
(``ErrorKind``), written by the script that writes ``error``, cleared by a new claim.

Protocol tests run per topology (redis, twemproxy, cluster); consumer tests on a real
consumer over redis and through nutcracker."""

from __future__ import annotations

import time
import uuid

import pytest

from butterfly_common.mq import DELAYED, FAILED, FINISHED, QUEUED, Broker, ErrorKind, Message
from butterfly_common.testing import wait_until


def wait_lease_expired(broker: Broker, topic: str) -> None:
    """Wait (with a deadline) until every lease in ``started`` is in the past."""
    started = broker.client.zrange(broker.keys(topic).started, -1, -1, withscores=True)
    if started:
        deadline = started[0][1] / 1000.0 + 0.02
        wait_until(lambda: time.time() > deadline, 5, what="lease deadline")


def claim_one(broker: Broker, topic: str, worker: str = "w1") -> Message:
    """Claim the next message (a retry's backoff is waited out, with a deadline)."""
    return wait_until(lambda: (broker.claim(topic, worker) or [None])[0], 5,
                      what=f"a message on {topic}")


# -- the protocol -------------------------------------------------------------------------

def test_the_kinds_are_a_closed_set() -> None:
    assert {k.value for k in ErrorKind} == {"timeout", "exception", "refused", "lost",
                                            "unstorable", "canceled"}
    assert ErrorKind.TIMEOUT == "timeout"  # a str: JSON and comparisons need no .value


def test_fail_stores_the_kind_a_retry_clears_it_the_last_one_stays(
        broker: Broker, topic: str) -> None:
    mid = broker.publish(topic, {}, max_retries=2).msg_id
    assert broker.get(mid).error_kind is None
    kinds = [ErrorKind.TIMEOUT, ErrorKind.EXCEPTION]
    for kind in kinds:
        msg = claim_one(broker, topic)
        assert msg.error_kind is None  # the claim's own reply: cleared
        assert broker.get(mid).error_kind is None
        assert broker.fail(msg, f"attempt {msg.attempts}", kind=kind) == DELAYED
        rec = broker.get(mid)
        assert rec.status == DELAYED and rec.error_kind == kind
        assert rec.to_dict()["error_kind"] == kind.value
    last = claim_one(broker, topic)
    assert broker.get(mid).error_kind is None
    assert broker.fail(last, "attempt 3", kind="refused") == FAILED
    rec = broker.get(mid)
    assert rec.status == FAILED and rec.error_kind is ErrorKind.REFUSED
    assert rec.error == "attempt 3"


def test_fail_defaults_to_exception_and_refuses_an_unknown_kind(
        broker: Broker, topic: str) -> None:
    mid = broker.publish(topic, {}).msg_id
    msg = claim_one(broker, topic)
    with pytest.raises(ValueError):
        broker.fail(msg, "x", kind="crashed")
    assert broker.get(mid).status == "started"  # nothing was written
    assert broker.fail(msg, "x", retry=False) == FAILED
    assert broker.get(mid).error_kind == ErrorKind.EXCEPTION


def test_a_fenced_out_fail_leaves_the_new_attempt_alone(broker: Broker, topic: str) -> None:
    mid = broker.publish(topic, {}).msg_id
    old = claim_one(broker, topic)
    assert broker.release([old]) == 1
    new = claim_one(broker, topic, "w2")
    assert broker.fail(old, "stale", kind=ErrorKind.TIMEOUT) == ""
    assert broker.get(mid).error_kind is None
    assert broker.complete(new, {"stat": "OK"})
    rec = broker.get(mid)
    assert rec.status == FINISHED and rec.error_kind is None


def test_a_reaped_message_of_a_dead_consumer_ends_lost(mq_client, topic: str) -> None:
    b = Broker(mq_client, lease=0.2, lost_grace=1)
    mid = b.publish(topic, {}, max_retries=0).msg_id
    assert b.claim(topic, "crashy")
    wait_lease_expired(b, topic)
    assert b.reap(topic) == 1
    rec = b.get(mid)
    assert rec.status == QUEUED and rec.error_kind is None  # handed out again, no failure
    assert b.claim(topic, "crashy")
    wait_lease_expired(b, topic)
    assert b.reap(topic) == 1
    rec = b.get(mid)
    assert rec.status == FAILED and rec.error_kind == ErrorKind.LOST
    assert "lease expired" in rec.error


def test_an_unknown_stored_kind_is_kept_as_written(broker: Broker, topic: str) -> None:
    """A newer writer's kind reaches an older reader unchanged, never dropped."""
    mid = broker.publish(topic, {}).msg_id
    broker.client.hset(broker.keys(topic).msg(mid), "error_kind", "quota")
    rec = broker.get(mid, topic)
    assert rec.error_kind == "quota" and not isinstance(rec.error_kind, ErrorKind)
    assert rec.to_dict()["error_kind"] == "quota"


# -- the consumer -------------------------------------------------------------------------

def ended(broker: Broker, msg_id: str) -> Message | None:
    msg = broker.get(msg_id)
    return msg if msg and msg.status in (FINISHED, FAILED) else None


def test_the_consumer_records_why_each_message_failed(sample_consumers) -> None:
    broker, start, _ = sample_consumers
    start(threads=2)
    key = uuid.uuid4().hex
    slow = broker.publish("/jobs/slow", {"seconds": 30}, timeout=0.5).msg_id
    raised = broker.publish("/jobs/flaky", {"key": key, "failures": 9}).msg_id
    refused = broker.publish("/jobs/add", {"a": 1}, max_retries=3).msg_id
    worded = broker.publish("/jobs/worded", {"text": "timeout after 0.5s"}).msg_id
    recovered = broker.publish("/jobs/flaky", {"key": key + "r", "failures": 1},
                               max_retries=1).msg_id
    got = {mid: wait_until(lambda m=mid: ended(broker, m), 15, what=f"{mid} ended")
           for mid in (slow, raised, refused, worded, recovered)}
    assert got[slow].status == FAILED and got[slow].error_kind == ErrorKind.TIMEOUT
    assert "timeout after 0.5s" in got[slow].error
    assert got[raised].status == FAILED and got[raised].error_kind == ErrorKind.EXCEPTION
    assert "RuntimeError: failure 1" in got[raised].error
    assert got[refused].status == FAILED and got[refused].error_kind == ErrorKind.REFUSED
    assert got[refused].attempts == 1 and got[refused].result == {"stat": "ERR_BAD_PARAMS"}
    # worded like the consumer's timeout, but the handler answered an error: an exception
    assert got[worded].error == "timeout after 0.5s"
    assert got[worded].error_kind == ErrorKind.EXCEPTION
    # the first attempt failed (error kept as history), the retry succeeded: no kind
    assert got[recovered].status == FINISHED and got[recovered].attempts == 2
    assert got[recovered].error and got[recovered].error_kind is None


def test_the_consumer_reaps_a_dead_consumers_message_as_lost(sample_consumers) -> None:
    broker, start, _ = sample_consumers
    broker.lost_grace = 0  # the first lapsed lease ends it (max_retries=0)
    mid = broker.publish("/jobs/add", {"a": 1, "b": 2}, force=True).msg_id
    # claimed (with anything an earlier test left queued), never run: its consumer is gone
    claimed = broker.claim("/jobs/add", "dead-worker", 1000)
    assert mid in {m.id for m in claimed}
    start(threads=2)  # a live consumer's keeper reaps the topic
    rec = wait_until(lambda: ended(broker, mid), 15, what="the lost message dead-lettered")
    assert rec.status == FAILED and rec.error_kind == ErrorKind.LOST
    assert rec.to_dict()["error_kind"] == "lost"
