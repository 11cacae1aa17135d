"""``Broker.publish_many``: pipelined publishes, each still its own script (idempotent by
``msg_id``, deduplicated by ``dedup_key``), run once per topology (redis, twemproxy,
cluster)."""

from __future__ import annotations

import uuid

import pytest

from butterfly_common.mq import Broker, InvalidTopic
from butterfly_common.mq.broker import NO_CONSUMER


def other_topic(broker: Broker) -> str:
    name = f"/t{uuid.uuid4().hex[:10]}/other"
    broker.heartbeat("w-test", [name])
    return name


def test_many_messages_over_topics_in_chunks(broker: Broker, topic: str) -> None:
    second = other_topic(broker)
    items = [{"topic": topic if n % 3 else second, "data": {"n": n}} for n in range(1200)]
    results = broker.publish_many(items, chunk=500)
    assert len(results) == 1200 and all(r.created and r.status == "queued" for r in results)
    assert len({r.msg_id for r in results}) == 1200
    assert broker.counts(topic)["queued"] == 800 and broker.counts(second)["queued"] == 400
    claimed = broker.claim(topic, "w1", 1000)
    assert [m.data["n"] for m in claimed] == [n for n in range(1200) if n % 3]  # FIFO
    # the id index knows generated ids: lookups by id alone work
    assert broker.get(results[0].msg_id).topic == second
    assert broker.get(results[1].msg_id).data == {"n": 1}


def test_each_message_stays_idempotent_by_its_id(broker: Broker, topic: str) -> None:
    first = broker.publish_many([{"topic": topic, "data": {"v": v}, "msg_id": v}
                                 for v in ("a", "b", "c")])
    assert [r.created for r in first] == [True, True, True]
    again = broker.publish_many([{"topic": topic, "data": {"v": "new"}, "msg_id": v}
                                 for v in ("a", "b", "d", "d")])
    assert [(r.msg_id, r.created, r.status) for r in again] == [
        ("a", False, "queued"), ("b", False, "queued"), ("d", True, "queued"),
        ("d", False, "queued")]
    assert broker.get("a", topic).data == {"v": "a"}
    assert broker.counts(topic)["queued"] == 4
    assert broker.get("d").topic == topic  # caller-chosen ids get their index entry too


def test_per_message_options_and_defaults(broker: Broker, topic: str) -> None:
    results = broker.publish_many([
        {"topic": topic, "data": {"n": 1}},
        {"topic": topic, "data": {"n": 2}, "priority": 9},
        {"topic": topic, "data": {"n": 3}, "delay": 60},
        {"topic": topic, "data": {"n": 4}, "dedup_key": "k"},
        {"topic": topic, "data": {"n": 5}, "dedup_key": "k"},
    ], max_retries=2, priority=1)
    assert [r.status for r in results] == ["queued", "queued", "delayed", "queued", "queued"]
    assert results[3].dedup == {"outcome": "new", "msg_id": results[3].msg_id}
    assert results[4].dedup == {"outcome": "duplicate", "msg_id": results[3].msg_id}
    assert not results[4].created
    claimed = broker.claim(topic, "w1", 10)
    assert [(m.data["n"], m.priority, m.max_retries) for m in claimed] == [
        (2, 9, 2), (1, 1, 2), (4, 1, 2)]


def test_a_topic_without_consumer_is_refused_per_item(broker: Broker, topic: str) -> None:
    nobody = f"/t{uuid.uuid4().hex[:10]}/nobody"
    results = broker.publish_many([{"topic": topic, "data": {}}, {"topic": nobody, "data": {}},
                                   {"topic": topic, "data": {}}])
    assert [(r.created, r.status) for r in results] == [(True, "queued"),
                                                       (False, NO_CONSUMER), (True, "queued")]
    assert broker.get(results[1].msg_id) is None  # nothing queued, nothing indexed
    assert broker.counts(nobody)["queued"] == 0 and broker.counts(topic)["queued"] == 2
    forced = broker.publish_many([{"topic": nobody, "data": {}}], force=True)
    assert forced[0].created and nobody in broker.topics()


@pytest.mark.parametrize(("item", "error", "words"), [
    ({"topic": "{bad}", "data": {}}, InvalidTopic, "message 1"),
    ({"topic": "/a/b", "data": []}, TypeError, "message 1"),
    ({"topic": "/a/b"}, TypeError, "message 1: a dict with topic and data"),
    ({"topic": "/a/b", "data": {}, "priority": 500}, ValueError, "message 1: priority"),
    ({"topic": "/a/b", "data": {}, "colour": "red"}, TypeError, "message 1: unknown"),
    ({"topic": "/a/b", "data": {}, "dedup_mode": "throttle"}, ValueError, "message 1"),
])
def test_a_bad_item_refuses_the_whole_list_before_anything_is_sent(
        broker: Broker, topic: str, item: dict, error: type, words: str) -> None:
    with pytest.raises(error, match=words):
        broker.publish_many([{"topic": topic, "data": {}}, item])
    assert broker.counts(topic)["queued"] == 0


def test_unknown_default_is_refused(broker: Broker, topic: str) -> None:
    with pytest.raises(TypeError, match="unknown option"):
        broker.publish_many([{"topic": topic, "data": {}}], colour="red")
