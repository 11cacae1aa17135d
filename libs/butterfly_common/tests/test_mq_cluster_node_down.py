"""A Redis Cluster master down (``cluster-require-full-coverage no``, as docs/queue.md says
to run a cluster without replicas): the topics whose slots live on the other masters keep
publishing, with generated ids too, one by one and with ``publish_many``, and their
messages are claimed and completed.

A publish's best-effort writes on other slots (the id index, the topic registry) used to
share its pipeline, and redis-py's cluster pipeline fails as a whole when one of its nodes
is down: 27 of 60 publishes with a generated id raised and queued nothing.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from butterfly_common.mq import Broker
from butterfly_common.redis_client import make_redis
from butterfly_common.testing import RedisClusterServers, wait_until

TOPICS = [f"/node_down/t{i}" for i in range(12)]


@pytest.fixture(scope="module")
def cluster_one_down() -> Iterator[tuple[Broker, list[str]]]:
    """A 3-master cluster with one master SIGKILLed and marked failed; yields a broker
    and the topics whose keys live on the two others (each with a live consumer)."""
    with RedisClusterServers(3) as cluster:
        broker = Broker(make_redis(cluster.url))
        nodes = {port: make_redis(f"redis://127.0.0.1:{port}/0") for port in cluster.ports}
        for node in nodes.values():
            node.config_set("cluster-require-full-coverage", "no")
        broker.heartbeat("node-down-worker", TOPICS, ttl=600)
        first = nodes[cluster.ports[0]]
        slots = first.execute_command("CLUSTER", "SLOTS")

        def owner(topic: str) -> int:
            slot = broker.client.keyslot(broker.keys(topic).queue)
            return next(int(s[2][1]) for s in slots if s[0] <= slot <= s[1])

        victim = cluster.nodes[2]
        live = [t for t in TOPICS if owner(t) != victim.port]
        assert live and len(live) < len(TOPICS), "the topics should spread over the masters"

        def marked_failed() -> bool:
            line = next(row for row in first.execute_command("CLUSTER", "NODES").splitlines()
                        if f":{victim.port}@" in row)
            return "fail" in line.split()[2] and "fail?" not in line.split()[2]

        victim.kill()
        wait_until(marked_failed, 30, interval=0.2, what="the killed master marked failed")
        yield broker, live


def test_generated_ids_publish_on_live_masters(cluster_one_down):
    broker, live = cluster_one_down
    topic = live[0]
    before = broker.counts(topic)["queued"]
    results = [broker.publish(topic, {"i": i}) for i in range(60)]
    assert all(r.created for r in results)
    assert broker.counts(topic)["queued"] == before + 60
    # read with their topic (a lookup by id alone reads the id index, whose key may be on
    # the dead master: it is best effort, and written where it could be)
    assert all(broker.get(r.msg_id, topic).id == r.msg_id for r in results)


def test_publish_many_and_forced_publish_on_live_masters(cluster_one_down):
    broker, live = cluster_one_down
    topic = live[-1]
    before = broker.counts(topic)["queued"]
    results = broker.publish_many([{"topic": topic, "data": {"i": i}} for i in range(50)])
    assert sum(r.created for r in results) == 50
    # force: the registry write (on whichever master holds its slot) is best effort
    forced = broker.publish_many([{"topic": topic, "data": {}}], force=True)
    assert forced[0].created and broker.publish(topic, {}, force=True).created
    assert broker.counts(topic)["queued"] == before + 52


def test_live_topics_are_claimed_and_completed(cluster_one_down):
    broker, live = cluster_one_down
    topic = live[0]
    sent = broker.publish(topic, {"claim": "me"})
    done = 0
    while True:
        msgs = broker.claim(topic, "node-down-worker", 100)
        if not msgs:
            break
        for msg in msgs:
            assert broker.complete(msg, {"stat": "OK"})
            done += 1
    assert done >= 1
    assert broker.get(sent.msg_id, topic).status == "finished"
