"""Deduplication by a caller's ``dedup_key``, run once per topology (redis, twemproxy,
cluster): ``until_done``, ``throttle`` and ``debounce`` (with and without ``extend``), each
decided inside the one publish script over the topic's hash tag."""

from __future__ import annotations

import pytest

from butterfly_common.mq import Broker
from butterfly_common.testing import wait_until


def outcome(res) -> tuple[str, str]:
    assert res.dedup is not None
    return res.dedup["outcome"], res.dedup["msg_id"]


def ready_ids(broker: Broker, topic: str) -> list[str]:
    queued = broker.list(topic, "queued", 1, 100, newest_first=False)[1]
    delayed = broker.list(topic, "delayed", 1, 100, newest_first=False)[1]
    return [m.id for m in queued + delayed]


def test_until_done_answers_the_live_message_then_lets_go(broker: Broker, topic: str) -> None:
    k = broker.keys(topic)
    first = broker.publish(topic, {"n": 1}, dedup_key="order-7")
    assert first.created and outcome(first) == ("new", first.msg_id)
    again = broker.publish(topic, {"n": 2}, dedup_key="order-7")
    assert (again.msg_id, again.created, again.status) == (first.msg_id, False, "queued")
    assert outcome(again) == ("duplicate", first.msg_id)
    assert broker.counts(topic)["queued"] == 1
    record = broker.get(first.msg_id, topic)
    assert (record.dedup_key, record.dedup_mode, record.data) == ("order-7", "until_done",
                                                                  {"n": 1})
    (msg,) = broker.claim(topic, "w1")
    started = broker.publish(topic, {"n": 3}, dedup_key="order-7")
    assert outcome(started) == ("duplicate", first.msg_id) and started.status == "started"
    assert broker.complete(msg, {"stat": "OK"})
    assert broker.client.exists(k.dedup("order-7")) == 0  # the end let go of the key
    after = broker.publish(topic, {"n": 4}, dedup_key="order-7")
    assert after.created and after.msg_id != first.msg_id
    assert outcome(after) == ("new", after.msg_id)
    # another key, and the same key on another topic, are other messages
    assert outcome(broker.publish(topic, {}, dedup_key="order-8"))[0] == "new"


def test_until_done_holds_through_retries_and_frees_at_the_dead_letter(broker: Broker,
                                                                       topic: str) -> None:
    first = broker.publish(topic, {}, dedup_key="k", max_retries=1).msg_id
    (msg,) = broker.claim(topic, "w1")
    assert broker.fail(msg, "boom") == "delayed"
    retrying = broker.publish(topic, {}, dedup_key="k")
    assert outcome(retrying) == ("duplicate", first) and retrying.status == "delayed"
    msg = wait_until(lambda: (broker.claim(topic, "w1") or [None])[0], 5, what="the retry")
    assert broker.fail(msg, "boom again") == "failed"
    fresh = broker.publish(topic, {}, dedup_key="k")
    assert outcome(fresh) == ("new", fresh.msg_id) and fresh.msg_id != first
    # requeueing the dead letter does not steal the key from the live one
    assert broker.requeue(topic, first)
    assert outcome(broker.publish(topic, {}, dedup_key="k")) == ("duplicate", fresh.msg_id)


def test_until_done_is_independent_of_msg_id(broker: Broker, topic: str) -> None:
    a = broker.publish(topic, {}, msg_id="a", dedup_key="k")
    b = broker.publish(topic, {}, msg_id="b", dedup_key="k")
    assert outcome(a) == ("new", "a") and outcome(b) == ("duplicate", "a")
    assert broker.get("b", topic) is None
    again = broker.publish(topic, {}, msg_id="a", dedup_key="other")
    assert (again.created, again.dedup) == (False, None)  # the id rule comes first
    assert broker.client.exists(broker.keys(topic).dedup("other")) == 0


def test_until_done_ttl_bounds_the_key(broker: Broker, topic: str) -> None:
    first = broker.publish(topic, {}, dedup_key="k", dedup_ttl=0.05).msg_id
    key = broker.keys(topic).dedup("k")
    wait_until(lambda: broker.client.exists(key) == 0, 5, what="the dedup key to expire")
    second = broker.publish(topic, {}, dedup_key="k", dedup_ttl=0.05)
    assert outcome(second) == ("new", second.msg_id) and second.msg_id != first
    assert broker.counts(topic)["queued"] == 2


def test_delete_and_purge_let_go_of_the_key(broker: Broker, topic: str) -> None:
    k = broker.keys(topic)
    first = broker.publish(topic, {}, dedup_key="d").msg_id
    assert broker.delete(topic, first)
    assert broker.client.exists(k.dedup("d")) == 0
    broker.publish(topic, {}, dedup_key="p", priority=3)
    assert broker.purge(topic, "queued") == 1
    assert broker.client.exists(k.dedup("p")) == 0
    assert outcome(broker.publish(topic, {}, dedup_key="p"))[0] == "new"


def test_throttle_one_per_key_per_ttl(broker: Broker, topic: str) -> None:
    first = broker.publish(topic, {"n": 1}, dedup_key="t", dedup_mode="throttle",
                           dedup_ttl=0.3)
    assert outcome(first) == ("new", first.msg_id)
    (msg,) = broker.claim(topic, "w1")
    assert broker.complete(msg, {"stat": "OK"})
    # ended, but the window is not over: still throttled, answering the message that ran
    later = broker.publish(topic, {"n": 2}, dedup_key="t", dedup_mode="throttle",
                           dedup_ttl=0.3)
    assert outcome(later) == ("throttled", first.msg_id)
    assert (later.created, later.status) == (False, "finished")
    assert broker.counts(topic)["queued"] == 0
    key = broker.keys(topic).dedup("t")
    wait_until(lambda: broker.client.exists(key) == 0, 5, what="the window to end")
    next_window = broker.publish(topic, {"n": 3}, dedup_key="t", dedup_mode="throttle",
                                 dedup_ttl=0.3)
    assert outcome(next_window) == ("new", next_window.msg_id) and next_window.created


def test_debounce_the_latest_publish_replaces_the_waiting_one(broker: Broker, topic: str
                                                              ) -> None:
    opts = {"dedup_key": "s", "dedup_mode": "debounce", "dedup_ttl": 10.0, "delay": 5.0}
    first = broker.publish(topic, {"n": 1}, **opts)
    assert outcome(first) == ("new", first.msg_id) and first.status == "delayed"
    second = broker.publish(topic, {"n": 2}, **opts)
    assert second.created and second.dedup == {"outcome": "replaced",
                                               "msg_id": second.msg_id,
                                               "replaced": first.msg_id}
    assert broker.get(first.msg_id, topic) is None
    assert ready_ids(broker, topic) == [second.msg_id]
    assert broker.get(second.msg_id, topic).data == {"n": 2}


def test_debounce_replaces_a_queued_message_in_its_priority_list(broker: Broker, topic: str
                                                                 ) -> None:
    opts = {"dedup_key": "s", "dedup_mode": "debounce", "dedup_ttl": 10.0}
    other = broker.publish(topic, {}).msg_id
    first = broker.publish(topic, {"n": 1}, priority=4, **opts).msg_id
    second = broker.publish(topic, {"n": 2}, priority=4, **opts)
    assert second.dedup["replaced"] == first
    assert ready_ids(broker, topic) == [second.msg_id, other]
    assert broker.counts(topic)["queued"] == 2
    third = broker.publish(topic, {"n": 3}, **opts)  # at priority 0 now
    assert third.dedup["replaced"] == second.msg_id
    k = broker.keys(topic)
    assert broker.client.exists(k.ready(4)) == 0 and broker.client.zcard(k.prios) == 0
    assert ready_ids(broker, topic) == [other, third.msg_id]


def test_debounce_window_kept_or_extended(broker: Broker, topic: str) -> None:
    key = broker.keys(topic).dedup("w")
    opts = {"dedup_key": "w", "dedup_mode": "debounce", "dedup_ttl": 10.0, "delay": 5.0}
    broker.publish(topic, {}, **opts)
    broker.client.pexpire(key, 4000)  # as if 6 s of the window had passed
    broker.publish(topic, {}, **opts)
    assert 0 < broker.client.pttl(key) <= 4000  # the window still ends where it did
    broker.publish(topic, {}, dedup_extend=True, **opts)
    assert broker.client.pttl(key) > 9000  # extend: a new full window
    assert broker.counts(topic)["delayed"] == 1


def test_debounce_does_not_replace_a_started_message(broker: Broker, topic: str) -> None:
    opts = {"dedup_key": "s", "dedup_mode": "debounce", "dedup_ttl": 10.0}
    first = broker.publish(topic, {"n": 1}, **opts).msg_id
    (msg,) = broker.claim(topic, "w1")
    second = broker.publish(topic, {"n": 2}, **opts)
    assert outcome(second) == ("new", second.msg_id) and second.msg_id != first
    assert broker.get(first, topic).status == "started"
    assert broker.complete(msg)
    third = broker.publish(topic, {"n": 3}, **opts)
    assert third.dedup["replaced"] == second.msg_id


def test_dedup_publish_without_a_consumer_is_refused_but_a_duplicate_is_answered(
        broker: Broker, topic: str) -> None:
    first = broker.publish(topic, {}, dedup_key="c").msg_id
    broker.unregister("w-test", [topic])
    assert outcome(broker.publish(topic, {}, dedup_key="c")) == ("duplicate", first)


@pytest.mark.parametrize(("options", "words"), [
    ({"dedup_mode": "throttle"}, "need a dedup_key"),
    ({"dedup_ttl": 5}, "need a dedup_key"),
    ({"dedup_key": "k", "dedup_mode": "often"}, "dedup_mode must be one of"),
    ({"dedup_key": "k", "dedup_mode": "throttle"}, "needs dedup_ttl > 0"),
    ({"dedup_key": "k", "dedup_mode": "debounce", "dedup_ttl": 0}, "needs dedup_ttl > 0"),
    ({"dedup_key": "k", "dedup_extend": True}, "only applies to dedup_mode debounce"),
    ({"dedup_key": "has space"}, "dedup_key must be"),
    ({"dedup_key": ""}, "dedup_key must be"),
    ({"dedup_key": "x" * 201}, "dedup_key must be"),
    ({"dedup_key": "k", "dedup_ttl": -1}, "dedup_ttl must be"),
    ({"dedup_key": "k", "dedup_ttl": float("nan")}, "dedup_ttl must be"),
    ({"dedup_key": "k", "dedup_ttl": float("inf")}, "dedup_ttl must be"),
])
def test_bad_dedup_options_are_refused_before_anything_is_written(
        broker: Broker, topic: str, options: dict, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        broker.publish(topic, {}, **options)
    assert broker.counts(topic)["queued"] == 0


def test_no_dedup_no_dedup_key_written(broker: Broker, topic: str) -> None:
    res = broker.publish(topic, {})
    assert res.dedup is None
    record = broker.get(res.msg_id, topic)
    assert (record.dedup_key, record.dedup_mode) == ("", "")
