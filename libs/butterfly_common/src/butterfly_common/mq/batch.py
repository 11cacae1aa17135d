"""Batches: many messages, possibly on many topics, and callbacks when they have all ended.

A batch's messages live on their topics' shards; its record lives in its own hash tag
``{batch:<id>}`` (see ``keys.py``), so no one script can end a message *and* count it.
The protocol instead keeps every step idempotent and repairable:

1. :meth:`Broker.publish_batch` opens the record (``batch_open.lua``: the members
   ``<topic> <msg id>``, state ``opening``), publishes the messages with ids derived
   from the batch (``batch.<batch id>.<n>``, each record carrying ``batch``), then marks
   it ``open``. A retry with the same ``batch_id`` repeats nothing twice: the record and
   every message are idempotent by id.
2. Whoever ends a message with a final outcome (the consumer right after its fenced
   ``complete``/``fail`` succeeded) calls :func:`ended`: ``batch_end.lua`` records the
   outcome with HSETNX (a message is counted once, however often it is told) and, once
   ``ok + notok + failed == total``, moves each callback from 0 to 1 ("due") exactly once.
3. The caller publishes each due callback with the id ``batch.<batch id>.<kind>`` and
   ``force``, then marks it sent (2). A crash between the two leaves it due; the next
   :func:`ended` or :func:`reconcile` publishes it again under the same id, which the
   publish script answers ``created=False``: one callback message per kind.
4. :func:`reconcile` repairs what no consumer told: a consumer killed between ``complete``
   and step 2, a message the reaper dead-lettered as lost, a canceled or deleted one. It
   reads the pending members' records (one pipelined trip) and counts those that ended
   (a record gone counts as failed). baichuan's maintenance pass runs it on open
   batches, and reading a batch (:func:`get`) runs it too.

Guarantees: each callback message is published exactly once per batch while its record
lives (``ttl``, default 7 days); its handler runs at-least-once like any message's. A
batch whose message is lost to a consumer crash still ends, by lease expiry and
redelivery (which then counts it) or by reconcile. ``on_success`` fires only when every
message finished with stat OK and the batch was not canceled; ``on_complete`` whenever
all ended (canceled ones count as failed).
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from redis.exceptions import RedisError

from .. import nesting
from . import scripts
from .errors import MQError
from .keys import PREFIX, check_topic, to_ms
from .message import FAILED, FINISHED, ErrorKind, Message

if TYPE_CHECKING:
    from .broker import Broker

log = logging.getLogger(__name__)

#: Every batch, newest last (id -> created ms), and the batches not ended yet.
BATCHES = f"{PREFIX}:batches"
OPEN_BATCHES = f"{PREFIX}:batches:open"
MAX_BATCH_ID_LEN = 100
MAX_BATCH = 10_000
DEFAULT_BATCH_TTL = 7 * 86400.0
KINDS = ("success", "complete")
#: Outcomes a member's end is counted as.
OK, NOTOK, FAILED_OUTCOME = "ok", "notok", "failed"
_BATCH_ID = re.compile(r"[A-Za-z0-9_.:@-]+")


class BatchNotFound(MQError):
    """No batch of that id (never opened, or its record expired)."""


class BatchIncomplete(MQError, RedisError):
    """The store failed after the batch's record was written: some of its messages may be
    out (and run), the batch stays ``opening`` (no callback fires for half a batch).
    Publish it again with the same ``batch_id`` once the store answers (nothing is
    queued twice), or cancel it. A ``RedisError`` too: the store was unavailable."""

    def __init__(self, batch_id: str, cause: Exception) -> None:
        super().__init__(f"batch {batch_id!r} is not fully published ({type(cause).__name__}: "
                         f"{cause}); publish it again with batch_id={batch_id!r} once the "
                         f"queue store answers, or cancel it")
        self.batch_id = batch_id
        self.cause = cause


def check_batch_id(batch_id: object) -> str:
    """1..MAX_BATCH_ID_LEN chars of ``A-Za-z0-9_.:@-`` (part of key names and of the
    derived message ids), else ValueError."""
    if (not isinstance(batch_id, str) or len(batch_id) > MAX_BATCH_ID_LEN
            or not _BATCH_ID.fullmatch(batch_id)):
        raise ValueError(f"batch_id must be 1..{MAX_BATCH_ID_LEN} chars of "
                         f"A-Z a-z 0-9 _ . : @ -: {batch_id!r}")
    return batch_id


@dataclass(frozen=True, slots=True)
class BatchKeys:
    """The keys of one batch, all in its hash tag."""

    record: str
    members: str
    ended: str

    @classmethod
    def of(cls, batch_id: str) -> BatchKeys:
        base = f"{PREFIX}:{{batch:{check_batch_id(batch_id)}}}"
        return cls(base, base + ":members", base + ":ended")

    def all(self) -> list[str]:
        return [self.record, self.members, self.ended]


def member_id(batch_id: str, n: int) -> str:
    """The id of the ``n``-th message of a batch (deterministic: a retried publish_batch
    publishes the same ids, which the publish script makes idempotent)."""
    return f"batch.{batch_id}.{n}"


def callback_id(batch_id: str, kind: str) -> str:
    """The id of a batch's ``kind`` callback message: the once-key of its publish."""
    return f"batch.{batch_id}.{kind}"


def member(topic: str, msg_id: str) -> str:
    return f"{topic} {msg_id}"


@dataclass(slots=True)
class Batch:
    """A batch record as read (see :func:`get`)."""

    id: str
    state: str  # opening | open | ended | canceled
    total: int
    ok: int
    notok: int
    failed: int
    on_success: str = ""
    on_complete: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    created_at: float | None = None
    ended_at: float | None = None
    canceled_at: float | None = None
    #: per kind: "" (no callback), "waiting", "due" (to publish), "sent"
    callbacks: dict[str, str] = field(default_factory=dict)

    @property
    def finished(self) -> int:
        return self.ok + self.notok

    @property
    def pending(self) -> int:
        return max(0, self.total - self.ok - self.notok - self.failed)

    @property
    def progress(self) -> float:
        return round((self.total - self.pending) / self.total, 4) if self.total else 1.0

    def to_dict(self) -> dict[str, Any]:
        return {"batch_id": self.id, "state": self.state, "total": self.total,
                "pending": self.pending, "finished": self.finished, "ok": self.ok,
                "notok": self.notok, "failed": self.failed, "progress": self.progress,
                "on_success": self.on_success, "on_complete": self.on_complete,
                "data": self.data, "created_at": self.created_at, "ended_at": self.ended_at,
                "canceled_at": self.canceled_at, "callbacks": self.callbacks}

    @classmethod
    def from_hash(cls, h: dict[str, str]) -> Batch:
        def sec(name: str) -> float | None:
            v = h.get(name)
            return int(v) / 1000 if v else None

        states = {"0": "waiting", "1": "due", "2": "sent"}
        callbacks = {kind: states.get(h.get(f"{kind}_fired", ""), "")
                     if h.get(f"on_{kind}") else "" for kind in KINDS}
        return cls(id=h["id"], state=h.get("state", ""), total=int(h.get("total", 0)),
                   ok=int(h.get("ok", 0)), notok=int(h.get("notok", 0)),
                   failed=int(h.get("failed", 0)), on_success=h.get("on_success", ""),
                   on_complete=h.get("on_complete", ""),
                   data=json.loads(h.get("data") or "{}"), created_at=sec("created_at"),
                   ended_at=sec("ended_at"), canceled_at=sec("canceled_at"),
                   callbacks=callbacks)


def outcome_of(status: str, result: dict[str, Any] | None) -> str:
    """How a final ``status`` counts: ok (finished with stat OK), notok (finished with
    another stat: an answered refusal), failed (dead-lettered)."""
    if status == FAILED:
        return FAILED_OUTCOME
    return OK if (result or {}).get("stat") == "OK" else NOTOK


@dataclass(frozen=True, slots=True)
class Opening:
    """The batch-level arguments of a publish_batch, checked before anything is sent."""

    id: str
    on_success: str | None
    on_complete: str | None
    data: dict[str, Any]
    ttl: float

    def check(self, max_depth: int | None) -> None:
        """ValueError / TypeError / InvalidTopic for bad callbacks, data or ttl."""
        for topic in (self.on_success, self.on_complete):
            if topic:
                check_topic(topic)
        if not isinstance(self.data, dict):
            raise TypeError("batch data must be a dict")
        nesting.check(self.data, max_depth, "data")
        if not 0 < self.ttl < float("inf"):
            raise ValueError("ttl must be > 0 seconds")

    def open(self, client: Any, members: list[str]) -> bool:
        """Write the record (state ``opening``) and list it; False when it existed (a
        retried publish_batch)."""
        k = BatchKeys.of(self.id)
        done = scripts.run(client, "batch_open", [k.record, k.members],
                           [self.id, self.on_success or "", self.on_complete or "",
                            json.dumps(self.data, separators=(",", ":")), to_ms(self.ttl),
                            *members])
        _listed(client, self.id)
        return bool(done)


def opened(broker: Broker, batch_id: str, refused: list[str]) -> None:
    """Every message is out: the batch is ``open`` (counted, reconciled); ``refused``
    members (no live consumer, nothing queued) count as failed."""
    _end(broker, batch_id, [(m, FAILED_OUTCOME) for m in refused], "open")


def _listed(client: Any, batch_id: str) -> None:
    """Add the batch to the list and the open set: global keys, single commands, best
    effort (a batch left out is still read, ended and called back; only the list and
    the maintenance sweep miss it)."""
    try:
        pipe = client.pipeline(transaction=False)
        now = int(time.time() * 1000)
        pipe.zadd(BATCHES, {batch_id: now}, nx=True)
        pipe.zadd(OPEN_BATCHES, {batch_id: now}, nx=True)
        pipe.execute()
    except RedisError as exc:
        log.warning("batch %s: listing it failed: %s", batch_id, exc)


def ended(broker: Broker, msg: Message, outcome: str) -> list[str]:
    """Count ``msg``'s final ``outcome`` in its batch and publish any callback due;
    returns the kinds published. Call it after the fenced complete / fail succeeded."""
    if not msg.batch:
        return []
    return _end(broker, msg.batch, [(member(msg.topic, msg.id), outcome)])


def _end(broker: Broker, batch_id: str, ends: Sequence[tuple[str, str]],
         mode: str = "") -> list[str]:
    k = BatchKeys.of(batch_id)
    args: list[Any] = [mode]
    for m, outcome in ends:
        args += [m, outcome]
    reply = scripts.run(broker.client, "batch_end", k.all(), args)
    state, due = reply[0], list(reply[2:])
    sent = _fire(broker, batch_id, due) if due else []
    if state and state not in ("open", "opening") and reply[1]:
        _closed(broker, batch_id)  # after the callbacks: a failed one keeps it swept
    return sent


def _closed(broker: Broker, batch_id: str) -> None:
    try:
        broker.client.zrem(OPEN_BATCHES, batch_id)
    except RedisError as exc:
        log.warning("batch %s: leaving the open set failed: %s", batch_id, exc)


def _fire(broker: Broker, batch_id: str, due: list[str]) -> list[str]:
    """Publish each due callback under its derived id (a repeat is ``created=False``),
    then mark it sent."""
    k = BatchKeys.of(batch_id)
    h = broker.client.hgetall(k.record)
    if not h:
        return []
    b = Batch.from_hash(h)
    body = {"batch_id": batch_id, "state": b.state, "total": b.total, "ok": b.ok,
            "notok": b.notok, "failed": b.failed, "data": b.data}
    ttl = int(h.get("ttl") or to_ms(DEFAULT_BATCH_TTL)) / 1000
    sent = []
    for kind in due:
        topic = b.on_success if kind == "success" else b.on_complete
        broker.publish(topic, {**body, "kind": kind}, msg_id=callback_id(batch_id, kind),
                       force=True, result_ttl=ttl)
        scripts.run(broker.client, "batch_sent", [k.record], [kind])
        sent.append(kind)
    return sent


def reconcile(broker: Broker, batch_id: str, cancel: bool = False) -> Batch:
    """Count the members that ended without telling the batch (see the module doc), fire
    what is due, and return the record. ``cancel``: first cancel the batch and its
    queued / delayed messages (they become dead letters of ``error_kind`` canceled)."""
    k = BatchKeys.of(batch_id)
    reply = scripts.run(broker.client, "batch_pending", k.all(), [])
    state, pending = reply[0], list(reply[1:])
    if not state:
        raise BatchNotFound(f"no batch {batch_id!r} (never opened, or expired)")
    pairs = [(m.split(" ", 1)[1], m.split(" ", 1)[0]) for m in pending]
    if cancel and state in ("open", "opening"):
        _end(broker, batch_id, [], "cancel")
        state = "canceled"
        for mid, topic in pairs:
            tk = broker.keys(topic)
            scripts.run(broker.client, "cancel",
                        [tk.queue, tk.delayed, tk.failed, tk.msg(mid), tk.prios],
                        [mid, f"batch {batch_id} canceled", ErrorKind.CANCELED.value])
    ends: list[tuple[str, str]] = []
    if pairs and state != "opening":
        for m, msg in zip(pending, broker.get_many(pairs), strict=True):
            if msg is None:
                ends.append((m, FAILED_OUTCOME))  # deleted, or ended and expired
            elif msg.status in (FINISHED, FAILED):
                ends.append((m, outcome_of(msg.status, msg.result)))
    _end(broker, batch_id, ends)
    return get(broker, batch_id, repair=False)


def get(broker: Broker, batch_id: str, repair: bool = True) -> Batch:
    """The batch record; ``repair`` reconciles it first (see :func:`reconcile`)."""
    if repair:
        return reconcile(broker, batch_id)
    h = broker.client.hgetall(BatchKeys.of(batch_id).record)
    if not h:
        raise BatchNotFound(f"no batch {batch_id!r} (never opened, or expired)")
    return Batch.from_hash(h)


def page(broker: Broker, page_index: int = 1, page_size: int = 20) -> tuple[int, list[Batch]]:
    """One page of batches, newest first, and their total (ids whose record expired
    are dropped from the list as they are met)."""
    page_index, page_size = max(1, int(page_index)), max(1, min(int(page_size), 1000))
    start = (page_index - 1) * page_size
    ids = broker.client.zrevrange(BATCHES, start, start + page_size - 1)
    total = int(broker.client.zcard(BATCHES))
    pipe = broker.client.pipeline(transaction=False)
    for bid in ids:
        pipe.hgetall(BatchKeys.of(bid).record)
    out, gone = [], []
    for bid, h in zip(ids, pipe.execute() if ids else [], strict=True):
        if h:
            out.append(Batch.from_hash(h))
        else:
            gone.append(bid)
    if gone:
        broker.client.zrem(BATCHES, *gone)
        broker.client.zrem(OPEN_BATCHES, *gone)
    return total - len(gone), out


def sweep(broker: Broker, limit: int = 100) -> int:
    """Reconcile up to ``limit`` open batches, oldest first (baichuan's maintenance
    pass); returns how many were looked at. A batch gone is dropped from the open set."""
    n = 0
    for bid in broker.client.zrange(OPEN_BATCHES, 0, limit - 1):
        n += 1
        try:
            b = reconcile(broker, bid)
        except BatchNotFound:
            _closed(broker, bid)
            continue
        except RedisError as exc:  # its shard may be down: the others go on
            log.warning("batch %s: reconcile failed: %s", bid, exc)
            continue
        if b.ended_at is not None and all(v != "due" for v in b.callbacks.values()):
            _closed(broker, bid)
    return n
