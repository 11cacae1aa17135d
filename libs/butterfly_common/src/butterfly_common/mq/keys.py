"""Key names of the queue protocol.

Every key of topic ``T`` carries the hash tag ``{T}``: Twemproxy (``hash_tag: "{}"``) and
Redis Cluster then place all of them on one shard / slot, which is what lets one Lua script
change a topic's state atomically. Keys of different tags never meet in one command.

Per topic ``T``:

===========================  ======  ==================================================
``bc:{T}:queue``             LIST    ready ids of priority 0, consumers pop from the head
``bc:{T}:queue:<p>``         LIST    ready ids of priority ``p`` (-100..100, not 0)
``bc:{T}:prios``             ZSET    p -> p for every priority list that may be non-empty
``bc:{T}:delayed``           ZSET    id -> due time (ms): delayed publish, retry backoff
``bc:{T}:started``           ZSET    id -> lease deadline (ms)
``bc:{T}:finished``          ZSET    id -> record expiry (ms)
``bc:{T}:failed``            ZSET    id -> record expiry (ms), the dead letters
``bc:{T}:workers``           ZSET    worker id -> last heartbeat (ms)
``bc:{T}:dedup:<key>``       STRING  id of the message standing for dedup key ``<key>``
``bc:{T}:limits``            HASH    the topic's rate / concurrency limits (``limits.py``)
``bc:{T}:g:<group>``         ZSET    ready ids of concurrency group ``<group>``, scored in
                                     claim order (priority, then FIFO via ``gseq``)
``bc:{T}:groups``            LIST    the ring: each group with ready ids, once; a claim
                                     serves it round-robin
``bc:{T}:grun``              HASH    group -> its started ids (for its ``max_running``)
``bc:{T}:gseq``              STRING  counter ordering ids within a group
``bc:{T}:msg:<id>``          HASH    the message record (fields: :data:`FIELDS`)
===========================  ======  ==================================================

Per batch ``B`` (see ``batch.py``), in its own hash tag ``{batch:B}``:

============================  ======  =================================================
``bc:{batch:B}``              HASH    the batch record (total, counts, callbacks, state)
``bc:{batch:B}:members``      SET     ``<topic> <msg id>`` of every message of the batch
``bc:{batch:B}:ended``        HASH    member -> its outcome (ok, notok, failed): HSETNX,
                                      so a message is counted once however often told
============================  ======  =================================================

Global, each touched by single-key commands only:

=================  ======  ========================================================
``bc:id:<id>``     STRING  topic of message ``<id>``, with TTL: the best-effort index
                           for lookups by id alone, never read or required by a
                           publish or a state change (see ``index.py``)
``bc:topics``      ZSET    topic -> last time a worker served it (or a forced publish)
``bc:workers``     HASH    worker id -> JSON record (topics, info, last_seen, ttl)
``bc:batches``     ZSET    batch id -> created (ms): the batch list (best effort)
``bc:batches:open`` ZSET   batch id -> created (ms): batches not ended yet, which
                           the maintenance pass reconciles (best effort)
=================  ======  ========================================================

Timestamps in records are epoch milliseconds, durations (``timeout``, ``result_ttl``,
``failure_ttl``) milliseconds: Lua does integer arithmetic on them without conversions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import InvalidTopic

PREFIX = "bc"
TOPICS = f"{PREFIX}:topics"
WORKERS = f"{PREFIX}:workers"
MAX_TOPIC_LEN = 200
MAX_ID_LEN = 200

#: Field order of the message hash as scripts return it (HMGET), see ``message.py``.
FIELDS: tuple[str, ...] = (
    "id", "topic", "data", "status", "attempts", "max_retries", "timeout", "result_ttl",
    "failure_ttl", "created_at", "enqueued_at", "started_at", "ended_at", "worker", "result",
    "error", "cost", "reqid", "token", "notify", "progress", "error_kind", "priority",
    "dedup_key", "dedup_mode", "trace", "group", "batch",
)

#: A message's ``priority``: an int in this range, higher claimed first, 0 the default.
MIN_PRIORITY = -100
MAX_PRIORITY = 100


def check_priority(priority: object) -> int:
    """An int in MIN_PRIORITY..MAX_PRIORITY (a bool or a float is refused, not rounded)."""
    if (isinstance(priority, bool) or not isinstance(priority, int)
            or not MIN_PRIORITY <= priority <= MAX_PRIORITY):
        raise ValueError(f"priority must be an integer {MIN_PRIORITY}..{MAX_PRIORITY}: "
                         f"{priority!r}")
    return priority


#: Deduplication modes of a publish with a ``dedup_key`` (see docs/queue.md):
#: ``until_done``: while the message holding the key is queued, delayed or started, a
#: publish with the same key answers that message (``duplicate``); ``throttle``: one
#: message per key per ``dedup_ttl`` (``throttled``); ``debounce``: within ``dedup_ttl``
#: the latest publish replaces the one not started yet (``replaced``), ``dedup_extend``
#: restarting the ttl at each publish.
DEDUP_MODES = ("until_done", "throttle", "debounce")
#: The outcome a publish with a ``dedup_key`` reports: created (new, replaced) or not.
DEDUP_OUTCOMES = ("new", "replaced", "duplicate", "throttled")


#: A message's concurrency ``group`` (see limits.py): a short name, part of a key name.
MAX_GROUP_LEN = 64
_GROUP = re.compile(r"[A-Za-z0-9_.:@-]+")


def check_group(group: object) -> str | None:
    """None (no group) or a group name of 1..MAX_GROUP_LEN of ``A-Za-z0-9_.:@-``, else
    ValueError: the name ends up inside key names, and a tenant id fits that alphabet."""
    if group is None:
        return None
    if (not isinstance(group, str) or len(group) > MAX_GROUP_LEN
            or not _GROUP.fullmatch(group)):
        raise ValueError(f"group must be 1..{MAX_GROUP_LEN} chars of A-Z a-z 0-9 _ . : @ -: "
                         f"{group!r}")
    return group


def check_dedup(dedup_key: object, mode: object, ttl: object, extend: object) -> str | None:
    """The mode a publish's dedup options stand for (None: no dedup), or ValueError.

    ``dedup_key`` is 1..MAX_ID_LEN printable non-space characters (it is part of a key
    name, like a message id); ``mode`` one of DEDUP_MODES (default ``until_done``);
    ``ttl`` seconds >= 0, required (> 0) by throttle and debounce, an upper bound of the
    key's life with until_done; ``extend`` only with debounce."""
    if dedup_key is None:
        if mode is not None or ttl or extend:
            raise ValueError("dedup_mode, dedup_ttl and dedup_extend need a dedup_key")
        return None
    if (not isinstance(dedup_key, str) or not dedup_key or len(dedup_key) > MAX_ID_LEN
            or not dedup_key.isprintable() or any(c.isspace() for c in dedup_key)):
        raise ValueError(f"dedup_key must be 1..{MAX_ID_LEN} printable non-space chars: "
                         f"{dedup_key!r}")
    mode = "until_done" if mode is None else mode
    if mode not in DEDUP_MODES:
        raise ValueError(f"dedup_mode must be one of {', '.join(DEDUP_MODES)}: {mode!r}")
    if (isinstance(ttl, bool) or not isinstance(ttl, int | float)
            or not 0 <= ttl < float("inf")):
        raise ValueError(f"dedup_ttl must be a finite number of seconds >= 0: {ttl!r}")
    if mode != "until_done" and ttl <= 0:
        raise ValueError(f"dedup_mode {mode} needs dedup_ttl > 0 (seconds)")
    if extend and mode != "debounce":
        raise ValueError("dedup_extend only applies to dedup_mode debounce")
    return str(mode)


def to_ms(seconds: float) -> int:
    """Seconds (the Python API's unit) to the records' milliseconds."""
    return round(seconds * 1000)


def check_topic(topic: str) -> str:
    """Refuse names that would break the hash tag (braces) or bloat every key."""
    if not isinstance(topic, str) or not topic or len(topic) > MAX_TOPIC_LEN:
        raise InvalidTopic(f"topic must be a non-empty str of <= {MAX_TOPIC_LEN} chars: "
                           f"{topic!r}")
    if "{" in topic or "}" in topic or any(c.isspace() for c in topic):
        raise InvalidTopic(f"topic may not contain braces or whitespace: {topic!r}")
    return topic


def topic_problem(topic: object) -> str | None:
    """Why ``topic`` cannot be published to, or None for a handler path ``/app/handler``.

    The protocol's own limits (:func:`check_topic`) plus the shape of a route: a leading
    ``/``, an app and a handler name (Python identifiers), at most one trailing ``/``
    (ignored, as in HTTP routing), so a typo such as ``demo_api/hello`` is refused
    instead of creating a queue nobody serves.
    """
    try:
        check_topic(topic)  # type: ignore[arg-type]
    except InvalidTopic as exc:
        return str(exc)
    assert isinstance(topic, str)
    parts = topic[1:].removesuffix("/").split("/") if topic.startswith("/") else []
    if len(parts) != 2 or not all(p.isidentifier() and p.isascii() for p in parts):
        return f"topic must be a handler path like /app/handler: {topic!r}"
    return None


def valid_topic(topic: object) -> bool:
    """True for a topic a consumer can serve: ``/app/handler`` (see :func:`topic_problem`)."""
    return topic_problem(topic) is None


def check_id(msg_id: str) -> str:
    """Caller-chosen ids end up inside key names: keep them short and printable."""
    if (not isinstance(msg_id, str) or not msg_id or len(msg_id) > MAX_ID_LEN
            or not msg_id.isprintable() or any(c.isspace() for c in msg_id)):
        raise ValueError(f"msg_id must be 1..{MAX_ID_LEN} printable non-space chars: "
                         f"{msg_id!r}")
    return msg_id


#: Message ids the fleet's services make for themselves, by owner: ruqi's fires
#: (``ruqi:<job>:<ms>``, derived from the job and its public next run time, so the publish
#: is idempotent across replicas) and xingqiao's task messages
#: (``xq<flow>.<token>.<task>.<run>``). An id is unique per topic, so whoever publishes it
#: first owns it: baichuan's public ``publish`` refuses these to every caller
#: (``ERR_MSG_ID_RESERVED``), else anyone could queue their own data under a fire's id
#: beforehand and the fire would "succeed" with it. The services publish through the
#: broker directly and are not affected.
RESERVED_IDS: dict[str, re.Pattern[str]] = {
    "ruqi": re.compile(r"ruqi:"),
    "xingqiao": re.compile(r"xq\d+\."),
    # a batch's messages and callbacks (batch.py): ``batch.<batch id>.<n | kind>``
    "batches": re.compile(r"batch\."),
}


def reserved_by(msg_id: str) -> str | None:
    """The service that reserves ids like ``msg_id`` (see :data:`RESERVED_IDS`), or None."""
    for owner, pattern in RESERVED_IDS.items():
        if pattern.match(msg_id):
            return owner
    return None


def id_key(msg_id: str) -> str:
    """The per-id index key (no topic tag: never in a script with topic keys, and never
    something a publish depends on)."""
    return f"{PREFIX}:id:{msg_id}"


@dataclass(frozen=True, slots=True)
class TopicKeys:
    """All key names of one topic; build once per topic and reuse."""

    topic: str
    queue: str
    delayed: str
    started: str
    finished: str
    failed: str
    workers: str
    msg_prefix: str
    prios: str
    dedup_prefix: str
    limits: str

    @classmethod
    def of(cls, topic: str) -> TopicKeys:
        base = f"{PREFIX}:{{{check_topic(topic)}}}:"
        return cls(topic, base + "queue", base + "delayed", base + "started",
                   base + "finished", base + "failed", base + "workers", base + "msg:",
                   base + "prios", base + "dedup:", base + "limits")

    def msg(self, msg_id: str) -> str:
        return self.msg_prefix + msg_id

    def dedup(self, dedup_key: str) -> str:
        """The key a message holds for ``dedup_key`` (see publish.lua)."""
        return self.dedup_prefix + dedup_key

    def ready(self, priority: int) -> str:
        """The LIST of ready ids of ``priority`` (0: the topic's ``queue``)."""
        return self.queue if priority == 0 else f"{self.queue}:{priority}"

    def by_status(self, status: str) -> str:
        """The container key holding ids in ``status`` (``queued``: the priority 0 LIST,
        the scripts find the other priorities' lists through ``prios``)."""
        try:
            return {"queued": self.queue, "delayed": self.delayed, "started": self.started,
                    "finished": self.finished, "failed": self.failed}[status]
        except KeyError:
            raise ValueError(f"unknown status {status!r}") from None
