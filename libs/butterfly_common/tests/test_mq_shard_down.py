"""One shard down leaves the other shard's topics at 100 %, for the queue's newer features
too (issue 24): nutcracker in front of two redis-server shards, two real consumers (the
framework's :class:`Consumer`, 4 threads each) serving eight topics, one shard SIGKILLed.

On the surviving shard's topics: grouped messages under a per-group cap all complete with
the cap held and the groups served round-robin; a batch completes and calls back exactly
once; priorities and dedup answer; limits are read and set. On the dead shard's topics:
a ``RedisError`` (HTTP: 503 ``ERR_MQ_UNAVAILABLE``) within a deadline, never a hang. A
batch whose record or one of whose topics is on the dead shard is refused before anything
is published; one that loses a shard mid-publish says which batch to finish, and
finishing it once the shard is back calls back once.

(Redis Cluster is in test_mq_cluster_node_down.py, with ``cluster-require-full-coverage
no``: by default a cluster with a master down and no replica refuses every command once
it marks the node failed; see docs/queue.md.)
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from redis.exceptions import RedisError

from butterfly_common.consumer import HEARTBEAT_EVERY, Consumer
from butterfly_common.discovery import discover
from butterfly_common.gateway import Gateway
from butterfly_common.logs import configure_logging
from butterfly_common.mq import Broker
from butterfly_common.mq.batch import BatchIncomplete, BatchKeys, callback_id, member_id
from butterfly_common.protocol import ProtocolSettings
from butterfly_common.redis_client import make_redis
from butterfly_common.runtime import configure
from butterfly_common.settings import load_settings
from butterfly_common.testing import Nutcracker, RedisServer, wait_until
from butterfly_common.testing.sampling import GroupSampler

TOPICS = [f"/sd/{n}" for n in (
    "alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta")]
CALLBACKS = ["/sd/iota", "/sd/kappa"]  # batch callbacks
#: A step on a dead shard must be refused within this (nutcracker answers at once; its
#: own server timeout is 3 s).
REFUSED_WITHIN = 4.0


@dataclass
class Fleet:
    broker: Broker
    proxy: Nutcracker
    shards: list[RedisServer]
    down: int
    live: list[str]
    dead: list[str]
    callback: str  # a callback topic on the live shard
    consumers: list[Consumer] = field(default_factory=list)
    #: batch ids whose record lands on the live shard (the others) or the dead one ("dead")
    batch_ids: dict[str, str] = field(default_factory=dict)
    #: per live topic, its consumers' heartbeats (id, ms) when the shard was killed
    beats: dict[str, list[tuple[str, float]]] = field(default_factory=dict)

    def shard_of_key(self, key: str) -> int:
        """The shard a key of this hash tag lands on (written through the proxy, read
        back from the shards themselves, then removed)."""
        self.broker.client.set(key, "1")
        try:
            return next(i for i, s in enumerate(self.shards) if make_redis(s.url).exists(key))
        finally:
            self.broker.client.delete(key)

    def batch_id_on(self, shard: int, prefix: str) -> str:
        """A batch id whose record lands on ``shard`` (probed while both are up)."""
        for _ in range(200):  # random ids: ids alike hash alike under ketama + fnv1a
            bid = f"{prefix}-{uuid.uuid4().hex[:12]}"
            if self.shard_of_key(BatchKeys.of(bid).record + ":probe") == shard:
                return bid
        raise AssertionError(f"no batch id of {prefix} lands on shard {shard}")


def topic_shard(shards: list[RedisServer], topic: str, broker: Broker) -> int:
    key = broker.keys(topic).workers  # written by every heartbeat
    holders = [i for i, s in enumerate(shards) if make_redis(s.url).exists(key)]
    assert len(holders) == 1, (topic, holders)
    return holders[0]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    tmp = tmp_path_factory.mktemp("shard-down")
    shards = [RedisServer().start(), RedisServer().start()]
    proxy = Nutcracker([s.port for s in shards]).start()
    consumers: list[Consumer] = []
    try:
        settings = load_settings({"BUTTERFLY_REDIS_URL": proxy.url,
                                  "BUTTERFLY_LOG_DIR": str(tmp / "log"),
                                  "BUTTERFLY_DATA_DIR": str(tmp / "data")})
        configure(settings)
        configure_logging(settings, "sd")
        routes = discover("shard_handlers")
        assert set(TOPICS + CALLBACKS) <= set(routes)
        broker = Broker(make_redis(proxy.url), lease=2.0, min_backoff=0.05, max_backoff=0.2)
        for _ in range(2):
            gateway = Gateway(ProtocolSettings(), settings.download_root, None)
            consumers.append(Consumer("sd", routes, gateway, broker, threads=4,
                                      max_idle=0.05).start())
        wait_until(lambda: sum(1 for w in broker.workers() if w.get("alive")
                               and set(TOPICS) <= set(w.get("topics", ()))) == 2, 30,
                   what="both consumers registered")
        where = {t: topic_shard(shards, t, broker) for t in TOPICS + CALLBACKS}
        down = min((0, 1), key=lambda i: list(where.values()).count(i))  # the fewer topics
        live = [t for t in TOPICS if where[t] != down]
        dead = [t for t in TOPICS if where[t] == down]
        callbacks = [t for t in CALLBACKS if where[t] != down]
        assert len(live) >= 3 and dead and callbacks, where
        fleet = Fleet(broker, proxy, shards, down, live, dead, callbacks[0], consumers)
        fleet.batch_ids = {name: fleet.batch_id_on(down if name == "dead" else 1 - down, name)
                           for name in ("live", "dead", "mixed", "late", "dropped")}
        yield fleet
    finally:
        for consumer in consumers:
            consumer.stop()
        proxy.__exit__(None, None, None)
        for shard in shards:
            shard.__exit__(None, None, None)


@pytest.fixture(scope="module")
def shard_down(fleet: Fleet) -> Iterator[Fleet]:
    """The fleet with its ``down`` shard SIGKILLed (started again, empty, at the end)."""
    fleet.beats = {t: fleet.broker.client.zrange(fleet.broker.keys(t).workers, 0, -1,
                                                 withscores=True) for t in fleet.live}
    fleet.shards[fleet.down].kill()
    yield fleet
    restart(fleet)


def restart(fleet: Fleet) -> None:
    victim = fleet.shards[fleet.down]
    if victim.proc is not None and victim.proc.poll() is None:
        return
    victim.__exit__(None, None, None)
    fleet.shards[fleet.down] = RedisServer(victim.port).start()


def refused_quickly(step: Callable[[], Any]) -> RedisError:
    """``step`` raises a RedisError (the documented store-unavailable error) in time."""
    began = time.monotonic()
    with pytest.raises(RedisError) as caught:
        step()
    assert time.monotonic() - began < REFUSED_WITHIN
    return caught.value


def all_finished(broker: Broker, pairs: list[tuple[str, str]]) -> bool:
    return all(m is not None and m.status == "finished" for m in broker.get_many(pairs))


# -- the surviving shard's topics ---------------------------------------------------------

def test_groups_keep_their_cap_and_round_robin(shard_down: Fleet) -> None:
    broker, topic = shard_down.broker, shard_down.live[0]
    broker.set_limits(topic, group_max_running=2)
    try:
        items = [{"topic": topic, "data": {"seconds": 0.02, "tag": g}, "group": g}
                 for g in ("A", "B") for _ in range(20)]
        items += [{"topic": topic, "data": {"seconds": 0.02, "tag": "C"}, "group": "C"}
                  for _ in range(3)]
        results = broker.publish_many(items)
        assert all(r.created for r in results)
        pairs = [(r.msg_id, topic) for r in results]
        with GroupSampler(broker, topic) as peaks:
            wait_until(lambda: all_finished(broker, pairs), 30, interval=0.05,
                       what="every grouped message finished")
        assert peaks.samples > 10
        assert max(peaks.peak.values()) <= 2 and peaks.peak["A"] == 2, peaks.peak
        msgs = [m for m in broker.get_many(pairs) if m is not None]
        order = [m.group for m in sorted(msgs, key=lambda m: (m.started_at or 0))]
        # round-robin: C's three (published last) start within the first rounds, and A
        # and B take turns instead of A's twenty going first
        assert max(i for i, g in enumerate(order) if g == "C") < 15, order
        assert 6 <= order[:20].count("A") <= 14, order
        state = broker.limits(topic)
        assert state.group_held > 0 and state.group_running == {}
    finally:
        broker.clear_limits(topic)


def test_a_batch_completes_and_calls_back_once(shard_down: Fleet) -> None:
    broker, live = shard_down.broker, shard_down.live
    bid = shard_down.batch_ids["live"]
    got, results = broker.publish_batch(
        [{"topic": live[i % len(live)], "data": {"seconds": 0.01, "tag": str(i)}}
         for i in range(12)],
        batch_id=bid, on_success=shard_down.callback, on_complete=shard_down.callback,
        data={"order": 7})
    assert got == bid and all(r.created for r in results)
    # where it lives: the record in its own tag, each message with its topic (one shard)
    alive = make_redis(shard_down.shards[1 - shard_down.down].url)
    assert all(alive.exists(key) for key in BatchKeys.of(bid).all()[:2])
    assert all(alive.exists(broker.keys(live[i % len(live)]).msg(member_id(bid, i)))
               for i in range(12))
    calls = [(callback_id(bid, kind), shard_down.callback) for kind in ("success", "complete")]
    wait_until(lambda: all_finished(broker, calls), 30, interval=0.05,
               what="both callbacks ran")
    b = broker.get_batch(bid)
    assert (b.state, b.ok, b.failed, b.callbacks) == (
        "ended", 12, 0, {"success": "sent", "complete": "sent"})
    for msg in broker.get_many(calls):
        assert msg is not None and msg.attempts == 1
        assert msg.result == {"stat": "OK", "batch_id": bid, "kind": msg.data["kind"],
                              "ok": 12, "failed": 0}
    # exactly once: the callback topic holds one message per kind of this batch, and
    # telling the batch again (a redelivery, a reconcile) publishes nothing more
    again = broker.get_batch(bid)
    assert again.callbacks == b.callbacks
    k = broker.keys(shard_down.callback)
    ours = [mid for mid in broker.client.zrange(k.finished, 0, -1)
            if mid.startswith(f"batch.{bid}.")]
    assert sorted(ours) == sorted(mid for mid, _ in calls)


def test_priorities_dedup_and_limits_answer(shard_down: Fleet) -> None:
    broker, topic = shard_down.broker, shard_down.live[1]
    broker.set_limits(topic, max_running=1)
    try:
        assert broker.limits(topic).max_running == 1
        blocker = broker.publish(topic, {"seconds": 0.3, "tag": "blocker"})
        wait_until(lambda: broker.counts(topic)["started"] == 1, 10, what="the blocker started")
        low = broker.publish(topic, {"tag": "low"}, priority=-5)
        high = broker.publish(topic, {"tag": "high"}, priority=50)
        first = broker.publish(topic, {"tag": "dedup"}, dedup_key="k1")
        second = broker.publish(topic, {"tag": "dedup"}, dedup_key="k1")
        assert first.created and first.dedup["outcome"] == "new"
        assert not second.created and second.msg_id == first.msg_id
        assert second.dedup["outcome"] == "duplicate"
        throttled = [broker.publish(topic, {"tag": "t"}, dedup_key="t1", dedup_mode="throttle",
                                    dedup_ttl=30).dedup["outcome"] for _ in range(3)]
        assert throttled == ["new", "throttled", "throttled"]
        ids = [blocker.msg_id, low.msg_id, high.msg_id, first.msg_id]
        pairs = [(i, topic) for i in ids]
        wait_until(lambda: all_finished(broker, pairs), 20, what="all four ran")
        got = {m.id: m for m in broker.get_many(pairs) if m is not None}
        # max_running 1 serialised them: the high priority ran before the low one
        assert got[high.msg_id].started_at < got[low.msg_id].started_at
        assert got[low.msg_id].priority == -5 and got[high.msg_id].priority == 50
        state = broker.limits(topic)
        assert state.max_running == 1 and state.held > 0
    finally:
        broker.clear_limits(topic)
    assert broker.limits(topic).max_running is None


# -- the dead shard's topics --------------------------------------------------------------

def test_the_dead_shards_topics_are_refused_in_time(shard_down: Fleet) -> None:
    broker, topic = shard_down.broker, shard_down.dead[0]
    refused_quickly(lambda: broker.publish(topic, {"tag": "x"}))
    refused_quickly(lambda: broker.publish(topic, {"tag": "x"}, group="A", priority=5))
    refused_quickly(lambda: broker.publish(topic, {"tag": "x"}, dedup_key="k"))
    refused_quickly(lambda: broker.set_limits(topic, group_max_running=2))
    refused_quickly(lambda: broker.limits(topic))
    refused_quickly(lambda: broker.counts(topic))
    refused_quickly(lambda: broker.publish_many([{"topic": topic, "data": {}}]))


def test_a_batch_touching_the_dead_shard_publishes_nothing(shard_down: Fleet) -> None:
    broker, live, dead = shard_down.broker, shard_down.live, shard_down.dead
    before = broker.counts(live[2])
    # 1. its record's shard is down: refused before any message is out
    on_dead = shard_down.batch_ids["dead"]
    refused_quickly(lambda: broker.publish_batch(
        [{"topic": live[2], "data": {"tag": "r"}}], batch_id=on_dead,
        on_complete=shard_down.callback))
    # 2. one of its topics' shard is down: refused before the record is written or any
    # message of the live topics is out
    mixed = shard_down.batch_ids["mixed"]
    refused_quickly(lambda: broker.publish_batch(
        [{"topic": live[2], "data": {"tag": "m"}}, {"topic": dead[0], "data": {"tag": "m"}}],
        batch_id=mixed, on_complete=shard_down.callback))
    assert broker.get_many([(member_id(on_dead, 0), live[2]),
                            (member_id(mixed, 0), live[2])]) == [None, None]
    assert broker.client.exists(BatchKeys.of(mixed).record) == 0
    assert broker.counts(live[2]) == before


def test_consumers_keep_beating_reaping_and_claiming_the_live_topics(
        shard_down: Fleet, caplog: pytest.LogCaptureFixture) -> None:
    """The consumers' upkeep and fetching skip the dead topics instead of stopping at
    them: a lapsed lease on a live topic sorted after a dead one is reaped and run, the
    heartbeat of the live topics goes on (else after its TTL their publishes are refused
    for want of a consumer), and a dead topic is claimed about once a second."""
    broker, live, dead = shard_down.broker, shard_down.live, shard_down.dead
    topic = max(live)  # reaped after min(dead), in the consumers' sorted order
    assert topic > min(dead)
    caplog.clear()
    began = time.monotonic()
    held: list[str] = []

    def ghost_holds_one() -> bool:  # a consumer that dies holding a message (the real
        # consumers may claim it first: those just run)
        broker.publish(topic, {"tag": "lost"})
        held.extend(m.id for m in broker.claim(topic, "ghost-worker", 1))
        return bool(held)

    wait_until(ghost_holds_one, 10, what="a message claimed by the ghost")
    wait_until(lambda: all_finished(broker, [(held[0], topic)]), 15, interval=0.05,
               what="the lapsed lease reaped and the message run")
    [done] = broker.get_many([(held[0], topic)])
    assert done is not None and done.worker != "ghost-worker" and done.attempts == 2
    elapsed = time.monotonic() - began
    claims = sum(1 for r in caplog.records if r.getMessage().startswith(f"claim on {dead[0]}"))
    # TOPIC_DOWN_PAUSE (1 s) per consumer, not one failed claim per poll
    assert claims <= len(shard_down.consumers) * (elapsed + 2), (claims, elapsed)

    def beaten() -> bool:
        for t, before in shard_down.beats.items():
            now = dict(broker.client.zrange(broker.keys(t).workers, 0, -1, withscores=True))
            if not all(now.get(wid, 0) > ms for wid, ms in before):
                return False
        return True

    wait_until(beaten, HEARTBEAT_EVERY + 5, interval=0.1,
               what="every consumer's heartbeat on every live topic since the kill")
    assert broker.publish(live[0], {"tag": "still served"}).created


class KillsMidway(Broker):
    """A broker that SIGKILLs a shard right before its first chunk of messages goes out:
    after publish_batch's probe and record, before its messages."""

    victim: RedisServer | None = None

    def _publish_chunk(self, batch: list[Any], force: bool) -> list[Any]:
        if self.victim is not None:
            self.victim.kill()
            self.victim = None
        return super()._publish_chunk(batch, force)


def test_a_batch_that_loses_a_shard_mid_publish_is_finished_by_a_retry(fleet: Fleet) -> None:
    """The probe passed, then the shard died: publish_batch raises BatchIncomplete naming
    the batch; the live member runs, the batch waits (``opening``: no callback for half a
    batch), and publishing it again once the shard is back finishes it, one callback;
    or canceling it does."""
    broker, live, dead = fleet.broker, fleet.live, fleet.dead

    def serving_again() -> bool:
        """The restarted (empty) shard knows the topic's consumers again: at their next
        heartbeat, within a second if theirs were failing, else within HEARTBEAT_EVERY."""
        return bool(broker.client.exists(broker.keys(dead[0]).workers))

    restart(fleet)
    wait_until(serving_again, HEARTBEAT_EVERY + 5, what="consumers seen on the restarted shard")
    bid = fleet.batch_ids["late"]
    items = [{"topic": live[3 % len(live)], "data": {"tag": "l"}},
             {"topic": dead[0], "data": {"tag": "d"}}]
    midway = KillsMidway(make_redis(fleet.proxy.url))
    midway.victim = fleet.shards[fleet.down]
    began = time.monotonic()
    with pytest.raises(BatchIncomplete) as caught:
        midway.publish_batch(items, batch_id=bid, on_complete=fleet.callback)
    assert time.monotonic() - began < REFUSED_WITHIN
    assert caught.value.batch_id == bid and repr(bid) in str(caught.value)
    assert isinstance(caught.value, RedisError)  # HTTP: 503 ERR_MQ_UNAVAILABLE
    wait_until(lambda: all_finished(broker, [(member_id(bid, 0), items[0]["topic"])]), 20,
               what="the live member ran")
    b = broker.get_batch(bid)
    assert (b.state, b.ok, b.callbacks["complete"]) == ("opening", 1, "waiting")
    restart(fleet)
    wait_until(serving_again, HEARTBEAT_EVERY + 5, what="consumers seen on the restarted shard")
    again, results = broker.publish_batch(items, batch_id=bid, on_complete=fleet.callback)
    assert again == bid and [r.created for r in results] == [False, True]
    call = [(callback_id(bid, "complete"), fleet.callback)]
    wait_until(lambda: all_finished(broker, call), 20, what="the callback")
    b = broker.get_batch(bid)
    assert (b.state, b.ok, b.failed, b.callbacks["complete"]) == ("ended", 2, 0, "sent")
    [callback] = broker.get_many(call)
    assert callback is not None and callback.attempts == 1

    # the other way out: cancel it (once the shard is back), on_complete fires once
    dropped = fleet.batch_ids["dropped"]
    midway.victim = fleet.shards[fleet.down]
    with pytest.raises(BatchIncomplete):
        midway.publish_batch(items, batch_id=dropped, on_complete=fleet.callback)
    restart(fleet)
    b = broker.cancel_batch(dropped)
    assert b.state == "canceled" and b.total == 2
    call = [(callback_id(dropped, "complete"), fleet.callback)]
    wait_until(lambda: all_finished(broker, call), 20, what="the canceled batch's callback")
    b = broker.get_batch(dropped)
    assert (b.pending, b.ok + b.failed, b.callbacks["complete"]) == (0, 2, "sent")
    assert b.failed >= 1  # the member that never went out
