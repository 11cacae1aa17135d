"""The best-effort id index: which topic a message id was published on.

``bc:id:<id>`` (a STRING holding the topic, with a TTL) lets a caller look a message up
by its id alone (``/baichuan/msg?msg_id=...``, ``mq.get(msg_id)``, ``mq.wait``). The key
has no topic tag, so it lives on any shard. That is why it is *never part of the
publish's correctness*:

- a message's identity is its topic plus id; the record ``bc:{T}:msg:<id>`` is the only
  thing a publish must write, and a caller-chosen id is unique per topic (the same id on
  two topics is two messages);
- the index is written after (never instead of) the topic's own step, in the same
  round trip, and its failure is logged and ignored: with one Twemproxy shard down a
  topic on a live shard still publishes and consumes at 100 %;
- a lookup by id alone is therefore best effort: while the index's shard is down (or
  after its key was lost) it answers "unknown"/503, and ``topic=`` always works.

When the same caller-chosen id is published on several topics, the index names the most
recent one that created a message; pass the topic to reach the others.

Its TTL: the publish gives it the message's longest retention plus ``index_slack``; a
failed attempt that will be retried extends it by the backoff; a completion rewrites it
only when it comes more than half the slack after the publish
(``Broker._index_outlives``): sooner, the publish's TTL already outlives the finished
record, and the rewrite cost a command per message (through Twemproxy, on another shard).
"""

from __future__ import annotations

import logging
from typing import Any

from redis.exceptions import RedisError

from .keys import id_key

log = logging.getLogger(__name__)


def queue_write(pipe: Any, msg_id: str, topic: str, ttl_ms: int) -> None:
    """Add the index write to a pipeline (its reply is ignored by :func:`settle`)."""
    pipe.set(id_key(msg_id), topic, px=max(1, ttl_ms))


def write(client: Any, msg_id: str, topic: str, ttl_ms: int) -> None:
    """Point ``msg_id`` at ``topic``; a store error is logged, never raised."""
    try:
        client.set(id_key(msg_id), topic, px=max(1, ttl_ms))
    except RedisError as exc:
        log.warning("id index write for %s failed (lookup by id alone will miss it): %s",
                    msg_id, exc)


def forget(client: Any, msg_ids: list[str], topic: str) -> None:
    """Drop index entries of deleted messages; best effort like every index write.

    An entry naming another topic (the same caller-chosen id published there later) is
    removed too: a lookup by id alone then misses, ``topic=`` still finds it."""
    if not msg_ids:
        return
    try:
        pipe = client.pipeline(transaction=False)
        for msg_id in msg_ids:
            pipe.delete(id_key(msg_id))
        pipe.execute(raise_on_error=False)
    except RedisError as exc:
        log.warning("id index clean-up of %d ids on %s failed: %s", len(msg_ids), topic, exc)


def lookup(client: Any, msg_id: str) -> str | None:
    """The topic ``msg_id`` was last published on, or None. Raises RedisError."""
    topic = client.get(id_key(msg_id))
    return None if topic is None else str(topic)


def lookup_many(client: Any, msg_ids: list[str]) -> list[str | None]:
    """Topics of several ids in one pipelined round trip. Raises the first RedisError."""
    if not msg_ids:
        return []
    pipe = client.pipeline(transaction=False)
    for msg_id in msg_ids:
        pipe.get(id_key(msg_id))
    return list(pipe.execute())


def ignore_errors(results: list[Any], positions: list[int], what: str) -> None:
    """Log (once) the failed best-effort commands of a pipeline reply."""
    failed = [results[i] for i in positions if isinstance(results[i], Exception)]
    if failed:
        log.warning("best-effort %s failed (%d commands): %s", what, len(failed), failed[0])
