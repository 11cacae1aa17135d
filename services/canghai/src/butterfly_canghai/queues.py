"""The queue as the console sees it: every topic's counts in one pipeline, pages of messages.

Reading never changes state (the original's counting ran cleanup). All topics' counts go
out as one non-transactional pipeline of one-tag read-only scripts (``topic_stats.lua``),
which Twemproxy and Redis Cluster split per shard: one round trip per shard per page,
whatever the number of topics. A page of messages is one script call (ids and records
together, no N+1).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from redis.exceptions import NoScriptError

from butterfly_common import mq
from butterfly_common.mq import STATUSES, Broker, Message
from butterfly_common.redis_client import Script


@dataclass
class TopicCounts:
    topic: str
    counts: dict[str, int] = field(default_factory=dict)
    consumers: int = 0
    #: the topic's limits (None: off), read in the same script as the counts
    max_running: int | None = None
    rate: int | None = None
    rate_window: float | None = None

    @property
    def limited(self) -> bool:
        return self.max_running is not None or self.rate is not None

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def broker() -> Broker:
    """The process-wide Broker (``mq.broker()``)."""
    return mq.broker()


_STATS = Script.from_package(__package__ or "butterfly_canghai", "topic_stats.lua")


def topic_counts(b: Broker | None = None) -> list[TopicCounts]:
    """Counts and live consumers of every registered topic, sorted by name.

    One read-only script per topic (its seven keys share the topic's hash tag), all in one
    non-transactional pipeline. A shard that does not know the script yet answers
    NOSCRIPT: one EVAL loads it there, and the misses go out again as one pipeline.
    """
    b = b or broker()
    topics = b.topics()
    if not topics:
        return []
    alive_after = int(time.time() * 1000) - int(b.heartbeat_ttl * 1000)
    calls = {}
    for topic in topics:
        k = b.keys(topic)
        calls[topic] = [k.queue, k.delayed, k.started, k.finished, k.failed, k.workers,
                        k.prios, k.limits]
    results: dict[str, list[int]] = {}
    pending = list(topics)
    for _ in range(8):  # each round loads the script on at least one more shard
        pipe = b.client.pipeline(transaction=False)
        for topic in pending:
            pipe.execute_command("EVALSHA", _STATS.sha, 8, *calls[topic], alive_after)
        missing = []
        for topic, reply in zip(pending, pipe.execute(raise_on_error=False), strict=True):
            if isinstance(reply, NoScriptError):
                missing.append(topic)
            elif isinstance(reply, Exception):
                raise reply
            else:
                results[topic] = reply
        if not missing:
            break
        results[missing[0]] = _STATS(b.client, calls[missing[0]], [alive_after])
        pending = missing[1:]
        if not pending:
            break
    else:
        for topic in pending:
            results[topic] = _STATS(b.client, calls[topic], [alive_after])
    return [_row(t, results[t]) for t in topics]


def _num(value: Any) -> int | None:
    return int(value) if value not in (None, "", b"") else None


def _row(topic: str, reply: list[Any]) -> TopicCounts:
    window_ms = _num(reply[8])
    return TopicCounts(topic, dict(zip(STATUSES, (int(n) for n in reply[:5]), strict=True)),
                       int(reply[5]), _num(reply[6]), _num(reply[7]),
                       None if window_ms is None else window_ms / 1000)


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
