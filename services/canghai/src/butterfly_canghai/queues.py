"""The queue as the console sees it: every topic's counts in one pipeline, pages of messages.

Reading never changes state (the original's counting ran cleanup). All topics' counts go
out as one non-transactional pipeline of one-tag scripts and ZCOUNTs, which Twemproxy and
Redis Cluster split per shard: one round trip per shard per page, whatever the number of
topics. A page of messages is one script call (ids and records together, no N+1).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from butterfly_common import mq
from butterfly_common.mq import STATUSES, Broker, Message
from butterfly_common.mq import scripts as mq_scripts


@dataclass
class TopicCounts:
    topic: str
    counts: dict[str, int] = field(default_factory=dict)
    consumers: int = 0

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def broker() -> Broker:
    """The process-wide Broker (``mq.broker()``)."""
    return mq.broker()


def topic_counts(b: Broker | None = None) -> list[TopicCounts]:
    """Counts and live consumers of every registered topic, sorted by name."""
    b = b or broker()
    topics = b.topics()
    if not topics:
        return []
    now_ms = int(time.time() * 1000)
    alive_after = now_ms - int(b.heartbeat_ttl * 1000)
    pipe = b.client.pipeline(transaction=False)
    calls = {}
    for i, topic in enumerate(topics):
        k = b.keys(topic)
        calls[2 * i] = mq_scripts.queue_in(
            pipe, "counts", [k.queue, k.delayed, k.started, k.finished, k.failed], [])
        pipe.zcount(k.workers, alive_after, "+inf")
    results = mq_scripts.settle(b.client, pipe.execute(raise_on_error=False), calls)
    out = []
    for i, topic in enumerate(topics):
        sizes = results[2 * i]
        out.append(TopicCounts(topic, dict(zip(STATUSES, (int(n) for n in sizes), strict=True)),
                               int(results[2 * i + 1])))
    return out


def totals(rows: list[TopicCounts]) -> dict[str, int]:
    """Sum of each status over all topics."""
    out = dict.fromkeys(STATUSES, 0)
    for row in rows:
        for status, n in row.counts.items():
            out[status] += n
    return out


def list_messages(topic: str, status: str, page_index: int = 1, page_size: int = 20,
                  newest_first: bool = True, b: Broker | None = None
                  ) -> tuple[int, list[Message]]:
    """One page of ``topic``'s messages in ``status`` and the status' total."""
    return (b or broker()).list(topic, status, page_index, page_size, newest_first)


def get_message(msg_id: str, topic: str | None = None) -> Message | None:
    """A message by id (any topic when ``topic`` is None), None when unknown or bad id."""
    try:
        return broker().get(msg_id, topic)
    except ValueError:
        return None


def workers() -> list[dict[str, Any]]:
    """The worker registry: id, topics, info, last_seen, alive."""
    return broker().workers()


def consumers_alive(rows: list[dict[str, Any]]) -> int:
    return sum(1 for w in rows if w.get("alive"))
