"""The HTTP API through Twemproxy (nutcracker) in front of two redis-server shards, as in
production: publish, msg, wait, topics, msgs, admin actions; a topic's keys on one shard,
topics spread over both; a dead shard answers 503, the other shard's topics keep working.
"""

from __future__ import annotations

import threading
import uuid

import pytest
from baichuan_helpers import ADMIN, make_client, refused

from butterfly_common.mq import Broker
from butterfly_common.mq.batch import BatchKeys
from butterfly_common.mq.keys import TopicKeys
from butterfly_common.redis_client import make_redis
from butterfly_common.testing import Nutcracker, RedisServer

TOPICS = [f"/app{i}/handler" for i in range(12)]


@pytest.fixture(scope="module")
def fleet():
    shards = [RedisServer().start(), RedisServer().start()]
    proxy = Nutcracker([s.port for s in shards]).start()
    try:
        yield proxy, shards
    finally:
        proxy.__exit__(None, None, None)  # stops it and removes its temp dir
        for shard in shards:
            shard.__exit__(None, None, None)


@pytest.fixture
def proxied(tmp_path, fleet):
    proxy, shards = fleet
    for shard in shards:
        make_redis(shard.url).flushall()
    broker = Broker(make_redis(proxy.url))
    broker.heartbeat("w1", TOPICS, {"host": "test"})
    return make_client(tmp_path, proxy.url), broker, shards


def shard_of(shards, topic):
    """Index of the shard holding ``topic``'s queue list (asserting it is only one)."""
    key = TopicKeys.of(topic).queue
    holders = [i for i, s in enumerate(shards) if make_redis(s.url).exists(key)]
    assert len(holders) == 1, (topic, holders)
    return holders[0]


def test_publish_msg_wait_topics_through_twemproxy(proxied):
    client, broker, shards = proxied
    ids = {}
    for topic in TOPICS:
        body = client.post("/baichuan/publish", json={"topic": topic, "data": {"t": topic}})
        assert body.status_code == 200, body.headers.get("x-reason")
        ids[topic] = body.get_json()["msg_id"]
    # every topic lives on one shard, and twelve topics use both shards
    assert {shard_of(shards, t) for t in TOPICS} == {0, 1}
    for topic, msg_id in ids.items():
        record = client.get("/baichuan/msg", query_string={"msg_id": msg_id}).get_json()
        assert record["topic"] == topic and record["data"] == {"t": topic}

    topic = TOPICS[0]

    def consume():
        [msg] = broker.claim(topic, "w1")
        broker.complete(msg, {"stat": "OK", "echo": msg.data["t"]})

    worker = threading.Timer(0.2, consume)
    worker.start()
    body = client.get("/baichuan/wait", query_string={"msg_id": ids[topic]}).get_json()
    worker.join()
    assert body["status"] == "finished" and body["result"] == {"stat": "OK", "echo": topic}

    listing = client.get("/baichuan/topics").get_json()["data"]
    rows = {row["topic"]: row for row in listing["list"]}
    assert listing["total"] == len(TOPICS)
    assert rows[topic]["finished"] == 1 and rows[TOPICS[1]]["queued"] == 1
    assert all(row["consumers"] == 1 for row in rows.values())
    page = client.get("/baichuan/msgs", query_string={"topic": TOPICS[1]}).get_json()
    assert [m["id"] for m in page["data"]["list"]] == [ids[TOPICS[1]]]


def test_refusals_and_admin_through_twemproxy(proxied):
    client, broker, _ = proxied
    topic = TOPICS[2]
    refused(client.post("/baichuan/publish", json={"topic": "/nobody/serves", "data": {}}),
            409, "ERR_NO_CONSUMER")
    first = client.post("/baichuan/publish", json={"topic": topic, "data": {},
                                                   "msg_id": "tw-1"}).get_json()
    assert first["created"] is True
    # ids are unique per topic (issue 12, defect 7): another topic's "tw-1" is its own
    assert client.post("/baichuan/publish", json={"topic": TOPICS[3], "data": {},
                                                  "msg_id": "tw-1"}).get_json()["created"]
    [msg] = broker.claim(topic, "w1")
    broker.fail(msg, "boom", retry=False, kind="timeout")
    dead = client.get(f"/baichuan/msg?msg_id=tw-1&topic={topic}").get_json()
    assert dead["status"] == "failed" and dead["error_kind"] == "timeout"
    assert client.post("/baichuan/requeue", json={"topic": topic, "all": True},
                       headers=ADMIN).get_json() == {"stat": "OK", "requeued": 1}
    assert client.post("/baichuan/delete", json={"topic": topic, "msg_id": "tw-1"},
                       headers=ADMIN).get_json()["stat"] == "OK"
    refused(client.get(f"/baichuan/msg?msg_id=tw-1&topic={topic}"), 404, "ERR_MSG_NOT_FOUND")
    assert client.get("/baichuan/workers").get_json()["data"]["list"][0]["id"] == "w1"


def batch_on(broker, shards, shard):
    """A batch id whose record lands on ``shard`` (a probe key of its tag, read back)."""
    for _ in range(200):
        bid = f"sd-{uuid.uuid4().hex[:12]}"
        probe = BatchKeys.of(bid).record + ":probe"
        broker.client.set(probe, "1")
        here = make_redis(shards[shard].url).exists(probe)
        broker.client.delete(probe)
        if here:
            return bid
    raise AssertionError(f"no batch id lands on shard {shard}")


def test_dead_shard_is_503_other_shard_still_serves(proxied):
    client, broker, shards = proxied
    for topic in TOPICS:
        client.post("/baichuan/publish", json={"topic": topic, "data": {}})
    down = shard_of(shards, TOPICS[0])
    on_other = next(t for t in TOPICS if shard_of(shards, t) != down)
    on_down = [t for t in TOPICS if shard_of(shards, t) == down]
    bid = batch_on(broker, shards, 1 - down)
    victim = shards[down]
    victim.stop()
    try:
        for topic in on_down[:2]:
            refused(client.get("/baichuan/msgs", query_string={"topic": topic}),
                    503, "ERR_MQ_UNAVAILABLE")
        listing = client.get("/baichuan/msgs", query_string={"topic": on_other})
        assert listing.status_code == 200
        assert listing.get_json()["data"]["total"] == 1
        # a batch with one topic on the dead shard: 503 before anything is published
        items = [{"topic": on_other, "data": {"b": 1}}, {"topic": on_down[0], "data": {}}]
        refused(client.post("/baichuan/publish_batch", json={"messages": items,
                                                              "batch_id": bid}),
                503, "ERR_MQ_UNAVAILABLE")
        assert client.get("/baichuan/msgs", query_string={"topic": on_other}
                          ).get_json()["data"]["total"] == 1
    finally:
        victim.__exit__(None, None, None)
        shards[down] = RedisServer(victim.port).start()  # the fleet fixture stops it
