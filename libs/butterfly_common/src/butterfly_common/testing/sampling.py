"""Sampling a topic's started messages per concurrency group while consumers work: the
check that a group's cap held, read from the records on the topic's own shard."""

from __future__ import annotations

import threading
from typing import Any

#: Counts the started messages of a topic per group in one call (the topic's keys share a
#: hash tag: plain Redis, Twemproxy, Redis Cluster).
_RUNNING_BY_GROUP = """
local ids = redis.call('ZRANGE', KEYS[1], 0, -1)
local c = {}
for i = 1, #ids do
  local g = redis.call('HGET', ARGV[1] .. ids[i], 'group') or ''
  c[g] = (c[g] or 0) + 1
end
local out = {}
for g, n in pairs(c) do out[#out + 1] = g; out[#out + 1] = n end
return out
"""


def running_by_group(broker: Any, topic: str) -> dict[str, int]:
    """``{group: started messages}`` of ``topic`` now ('' for ungrouped ones)."""
    k = broker.keys(topic)
    flat = broker.client.eval(_RUNNING_BY_GROUP, 1, k.started, k.msg_prefix)
    return {flat[i]: int(flat[i + 1]) for i in range(0, len(flat), 2)}


class GroupSampler:
    """Reads :func:`running_by_group` over and over in a thread (a ``with`` block);
    ``peak`` is the largest count seen per group, ``samples`` how many reads."""

    def __init__(self, broker: Any, topic: str) -> None:
        self.broker, self.topic = broker, topic
        self.peak: dict[str, int] = {}
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for g, n in running_by_group(self.broker, self.topic).items():
                self.peak[g] = max(self.peak.get(g, 0), n)
            self.samples += 1

    def __enter__(self) -> GroupSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
