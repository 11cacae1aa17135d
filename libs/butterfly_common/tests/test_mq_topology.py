"""Where the protocol's keys land: one shard per topic, topics spread over shards.

Reads the redis-server shards behind nutcracker directly, as only that shows silent
misplacement (a proxy routes by the first key of a command and checks nothing else).
"""

from __future__ import annotations

import uuid
from typing import Any

import redis

from butterfly_common.mq import Broker
from butterfly_common.redis_client import make_redis

MQBackend = Any  # conftest.MQBackend: name, url, shard_ports


def direct(port: int) -> redis.Redis:
    return make_redis(f"redis://127.0.0.1:{port}/0")


def populate(b: Broker, topic: str) -> list[str]:
    """Create every key kind of ``topic``; returns the key names."""
    b.heartbeat("w-topo", [topic])
    ids = [b.publish(topic, {"i": i}).msg_id for i in range(4)]
    b.publish(topic, {}, delay=60)
    m1, m2, _m3 = b.claim(topic, "w-topo", 3)
    b.complete(m1, {"ok": True})
    b.fail(m2, "x", retry=False)
    ids.append(b.publish(topic, {}, priority=5).msg_id)  # a priority list and its index
    ids.append(b.publish(topic, {}, dedup_key="once", dedup_mode="throttle",
                         dedup_ttl=60).msg_id)
    k = b.keys(topic)
    return [k.queue, k.delayed, k.started, k.finished, k.failed, k.workers, k.prios,
            k.ready(5), k.dedup("once"), *(k.msg(i) for i in ids)]


def test_one_topic_lives_on_one_shard(mq_twemproxy: MQBackend) -> None:
    b = Broker(make_redis(mq_twemproxy.url))
    topic = f"/topo{uuid.uuid4().hex[:8]}/h"
    keys = populate(b, topic)
    shards = [direct(p) for p in mq_twemproxy.shard_ports]
    holders = {i for i, s in enumerate(shards) for k in keys if s.exists(k)}
    assert len(holders) == 1
    (home,) = holders
    assert all(shards[home].exists(k) for k in keys)
    # and the proxy reads what the scripts wrote
    assert b.counts(topic) == {"queued": 3, "delayed": 1, "started": 1, "finished": 1,
                               "failed": 1}


def test_topics_spread_over_both_shards(mq_twemproxy: MQBackend) -> None:
    b = Broker(make_redis(mq_twemproxy.url))
    shards = [direct(p) for p in mq_twemproxy.shard_ports]
    placement = {}
    for i in range(20):
        topic = f"/spread{uuid.uuid4().hex[:6]}/h{i}"
        mid = b.publish(topic, {}, force=True).msg_id
        k = b.keys(topic)
        on = [n for n, s in enumerate(shards) if s.exists(k.queue)]
        assert len(on) == 1 and shards[on[0]].exists(k.msg(mid))
        placement[topic] = on[0]
        assert b.get(mid).topic == topic  # id index lives wherever its own key hashes
    assert set(placement.values()) == {0, 1}


def test_cluster_topic_keys_share_one_slot(mq_cluster: MQBackend) -> None:
    client = make_redis(mq_cluster.url)
    b = Broker(client)
    slots = set()
    for i in range(20):
        topic = f"/slot{uuid.uuid4().hex[:6]}/h{i}"
        keys = populate(b, topic)
        key_slots = {client.keyslot(k) for k in keys}
        assert len(key_slots) == 1
        slots |= key_slots
    nodes = {client.nodes_manager.get_node_from_slot(s).name for s in slots}
    assert len(nodes) >= 2


def test_scripts_reload_after_flush(mq_twemproxy: MQBackend, mq_cluster: MQBackend) -> None:
    """A shard that lost its script cache (restart, SCRIPT FLUSH) gets EVAL once."""
    for backend in (mq_twemproxy, mq_cluster):
        b = Broker(make_redis(backend.url))
        topic = f"/flush{uuid.uuid4().hex[:6]}/h"
        b.heartbeat("w-flush", [topic])
        for port in backend.shard_ports:
            direct(port).script_flush()
        mid = b.publish(topic, {}).msg_id  # pipelined EVALSHA -> NOSCRIPT -> EVAL
        for port in backend.shard_ports:
            direct(port).script_flush()
        (msg,) = b.claim(topic, "w-flush")  # plain EVALSHA -> NOSCRIPT -> EVAL
        assert msg.id == mid and b.complete(msg, {})
