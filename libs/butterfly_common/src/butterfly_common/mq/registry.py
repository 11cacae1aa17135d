"""Who consumes what: the worker registry (with heartbeats) and the topic registry.

There is no KEYS/SCAN behind Twemproxy, so everything a dashboard must enumerate is kept
in explicit registries. Each command touches one key; several go out in one
non-transactional pipeline. Liveness is per topic too (``bc:{T}:workers``), so the
publish script can check for a live consumer without leaving the topic's hash tag.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from . import scripts
from .keys import TOPICS, WORKERS, TopicKeys, to_ms

HEARTBEAT_TTL = 60.0


class Registry:
    """Worker and topic registries over one client (plain Redis, Twemproxy or Cluster)."""

    def __init__(self, client: Any, heartbeat_ttl: float = HEARTBEAT_TTL) -> None:
        self.client = client
        self.heartbeat_ttl = heartbeat_ttl

    def heartbeat(self, worker_id: str, topics: Iterable[str],
                  info: dict[str, Any] | None = None,
                  ttl: float | None = None, serving: bool = True) -> float:
        """Record ``worker_id`` as alive and serving ``topics``; returns server time (s).

        Call it more often than ``ttl`` (default: the broker's heartbeat TTL, which is also
        how fresh a topic's consumer must be for publish to accept messages). With
        ``serving=False`` (a consumer that lost threads) the worker record is refreshed
        but the topics' liveness is not: publishers stop counting on it.
        """
        topics = sorted(set(topics))
        keys = [TopicKeys.of(t) for t in topics]
        record = {"id": worker_id, "topics": topics, "info": info or {},
                  "ttl": ttl if ttl is not None else self.heartbeat_ttl}
        head = json.dumps(record, ensure_ascii=False)[:-1] + ", "
        pipe = self.client.pipeline(transaction=False)
        calls = {0: scripts.queue_in(pipe, "worker_seen", [WORKERS], [worker_id, head])}
        for i, k in enumerate(keys if serving else []):
            calls[1 + 2 * i] = scripts.queue_in(pipe, "touch", [k.workers], [worker_id])
            calls[2 + 2 * i] = scripts.queue_in(pipe, "touch", [TOPICS], [k.topic])
        results = scripts.settle(self.client, pipe.execute(raise_on_error=False), calls)
        return int(results[0]) / 1000.0

    def unregister(self, worker_id: str, topics: Iterable[str]) -> None:
        """Forget a worker at clean shutdown, so publishers stop counting on it at once."""
        pipe = self.client.pipeline(transaction=False)
        pipe.hdel(WORKERS, worker_id)
        for topic in set(topics):
            pipe.zrem(TopicKeys.of(topic).workers, worker_id)
        pipe.execute()

    def _records(self, prune_after: float | None) -> tuple[int, int, list[dict[str, Any]]]:
        reply = scripts.run(self.client, "workers", [WORKERS],
                            [-1 if prune_after is None else to_ms(prune_after)])
        now, pruned = int(reply[0]), int(reply[1])
        out = []
        for i in range(2, len(reply), 2):
            rec = json.loads(reply[i + 1])
            seen = int(rec.get("last_seen", 0))
            rec["last_seen"] = seen / 1000.0
            fresh = now - seen <= to_ms(float(rec.get("ttl") or self.heartbeat_ttl))
            # a consumer reports its own health (all threads alive) in its heartbeat
            healthy = (rec.get("info") or {}).get("healthy", True) is not False
            rec["alive"] = fresh and healthy
            out.append(rec)
        out.sort(key=lambda r: r["id"])
        return now, pruned, out

    def workers(self) -> list[dict[str, Any]]:
        """Every registered worker: id, topics, info, ttl, last_seen (s), alive (bool:
        heartbeat fresh and, for a consumer, every thread alive)."""
        return self._records(None)[2]

    def topics(self) -> list[str]:
        """Topics any worker ever served (or that a forced publish created), sorted."""
        return sorted(self.client.zrange(TOPICS, 0, -1))

    def prune_workers(self, ttl: float | None = None) -> int:
        """Drop workers silent for more than ``ttl`` seconds everywhere; returns how many
        global records went. Per-topic entries are trimmed for every registered topic."""
        ttl = self.heartbeat_ttl if ttl is None else ttl
        now, pruned, _ = self._records(ttl)
        pipe = self.client.pipeline(transaction=False)
        for topic in self.topics():
            pipe.zremrangebyscore(TopicKeys.of(topic).workers, "-inf", now - to_ms(ttl))
        pipe.execute()
        return pruned
