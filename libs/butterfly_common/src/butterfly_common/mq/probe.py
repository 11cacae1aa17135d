"""Which parts of the queue store answer: for ``/readyz`` behind Twemproxy.

A proxy answers PING itself, so a dead shard behind it is invisible to a ping. This
reads one tiny key of each part instead, in one pipelined round trip: the two global
registries and a bounded number of registered topics (each topic's keys live on one
shard). Every read is single-key and harmless (EXISTS), so the probe is safe to run
from every process every few seconds.
"""

from __future__ import annotations

from typing import Any

from redis.exceptions import RedisError

from .keys import TOPICS, WORKERS, TopicKeys

MAX_TOPICS = 200


def unreachable(client: Any, topics: list[str] | None = None,
                max_topics: int = MAX_TOPICS, registries: bool = True) -> dict[str, str]:
    """``{part: error}`` for every part of the store that did not answer (empty: all
    well). ``topics`` default to the registered ones (when the registry answers);
    ``registries=False`` leaves the two global registries out (only the topics' shards
    are asked about)."""
    down: dict[str, str] = {}
    if topics is None:
        try:
            topics = sorted(client.zrange(TOPICS, 0, max_topics - 1))
        except RedisError as exc:
            down["topic registry"] = _short(exc)
            topics = []
    parts = [("topic registry", TOPICS), ("worker registry", WORKERS)] if registries else []
    for topic in topics[:max_topics]:
        try:
            parts.append((f"topic {topic}", TopicKeys.of(topic).queue))
        except ValueError:
            continue
    pipe = client.pipeline(transaction=False)
    for _, key in parts:
        pipe.exists(key)
    for (name, _), result in zip(parts, pipe.execute(raise_on_error=False), strict=True):
        if isinstance(result, Exception):
            down.setdefault(name, _short(result))
    return down


def describe(down: dict[str, str]) -> str:
    """One line for ``/readyz``: which parts are down, and the first error."""
    names = sorted(down)
    shown = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
    return f"degraded: unreachable {shown} ({down[names[0]]})"


def _short(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"[:120]
