"""``StubBroker``: the queue in memory, for unit tests of one's own handlers.

Publish messages, run them synchronously with :meth:`StubBroker.process` (or
:meth:`StubBroker.join`, which also runs retries and delayed messages at once), then read
the outcome with :meth:`StubBroker.get` - no Redis, no threads, no waiting::

    stub = StubBroker.for_service("shop", settings)   # or the plugin's stub_broker("shop")
    msg_id = stub.publish("/shop/greet", {"name": "ada"}).msg_id
    stub.join()
    stub.get(msg_id).status, stub.get(msg_id).result   # "finished", {"stat": "OK", ...}

A message runs through the real :class:`~butterfly_common.consumer.Consumer`'s
``process`` over the service's real :class:`~butterfly_common.gateway.Gateway` (the same
binding, hooks, refusals, rendering and outcome recording as ``butterfly serve`` with
``BUTTERFLY_CONSUME=1``); only the store is replaced. It keeps the Redis broker's rules
(:class:`~butterfly_common.mq.broker.Broker`): a publish to a topic nobody serves raises
NoConsumer unless forced, a caller-chosen id is idempotent per topic, data and results go
through JSON, bad parameters dead-letter at once, an exception retries while
``max_retries`` allow (without the backoff's wait), a refusal finishes with its stat,
completion notices go to the ``notify`` topic. Time limits (``timeout``), leases and
record expiry are not simulated: nothing runs in the background.
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ..mq.broker import (
    DEFAULT_FAILURE_TTL,
    DEFAULT_RESULT_TTL,
    DEFAULT_TIMEOUT,
    LEASE,
    NO_CONSUMER,
    NOTICE_RESULT_TTL,
    backoff,
    check_publish,
    check_trace,
)
from ..mq.errors import NoConsumer
from ..mq.keys import TopicKeys, check_dedup, check_group, check_id
from ..mq.message import (
    DELAYED,
    FAILED,
    FINISHED,
    QUEUED,
    STARTED,
    STATUSES,
    ErrorKind,
    Message,
    PublishResult,
    new_id,
)
from ..mq.progress import normalize as normalize_progress

if TYPE_CHECKING:
    from ..consumer import Consumer
    from ..service import Service
    from ..settings import Settings

__all__ = ["StubBroker"]

#: Messages one :meth:`StubBroker.process` or :meth:`StubBroker.join` runs at most before
#: it gives up (a handler that publishes to its own topic forever).
MAX_MESSAGES = 100_000


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class StubBroker:
    """An in-memory :class:`~butterfly_common.mq.BrokerLike`: publish, process, inspect.

    ``serves``: topics with a (pretend) live consumer besides those of the services
    attached with :meth:`attach`. Times are this process's clock, shifted forward by
    :meth:`join` when it runs delayed messages early.
    """

    lease = LEASE

    def __init__(self, serves: Iterable[str] = (), *, max_depth: int | None = None,
                 min_backoff: float = 1.0, max_backoff: float = 300.0) -> None:
        self.max_depth = max_depth
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self._records: dict[tuple[str, str], Message] = {}
        self._queues: dict[str, deque[str]] = {}
        self._delayed: dict[str, dict[str, float]] = {}  # topic -> id -> due time
        # (topic, dedup_key) -> (standing id, expiry or None), as bc:{T}:dedup:<key>
        self._dedup: dict[tuple[str, str], tuple[str, float | None]] = {}
        self._served: dict[str, set[str]] = {"stub": set(serves)}  # worker -> topics
        self._consumers: list[Consumer] = []
        self._skew = 0.0  # seconds join() moved the clock forward

    # -- wiring -------------------------------------------------------------------------
    @classmethod
    def for_service(cls, service: Service | str, settings: Settings | None = None
                    ) -> StubBroker:
        """A stub serving every topic of ``service`` (a Service or its name), prepared as
        ``butterfly serve`` prepares it (settings installed, config checked, ``setup``)."""
        return cls().attach(service, settings)

    def attach(self, service: Service | str, settings: Settings | None = None) -> StubBroker:
        """Serve ``service``'s topics: a real Consumer over this broker, never started
        (no threads); :meth:`process` hands it the messages one by one."""
        from .. import runtime
        from ..consumer import Consumer
        from ..serve import prepare
        from ..service import get_service

        if isinstance(service, str):
            service = get_service(service)
        prepare(service, settings or runtime.get_settings())
        rt = runtime.build_runtime(service)
        consumer = Consumer(service.name, rt.routes, rt.gateway, self)
        self._consumers.append(consumer)
        self._served[consumer.worker_id] = set(consumer.topics)
        return self

    def _now(self) -> float:
        return round(time.time() + self._skew, 3)

    def _record(self, topic: str, msg_id: str) -> Message | None:
        return self._records.get((topic, msg_id))

    # -- BrokerLike: publishing and reading ----------------------------------------------
    def publish(self, topic: str, data: dict[str, Any], *, msg_id: str | None = None,
                delay: float = 0.0, at_front: bool = False,
                timeout: float = DEFAULT_TIMEOUT, max_retries: int = 0,
                result_ttl: float = DEFAULT_RESULT_TTL,
                failure_ttl: float = DEFAULT_FAILURE_TTL, reqid: str | None = None,
                force: bool = False, notify: str | None = None,
                priority: int = 0, dedup_key: str | None = None,
                dedup_mode: str | None = None, dedup_ttl: float = 0.0,
                dedup_extend: bool = False, trace: str | None = None,
                group: str | None = None) -> PublishResult:
        """Queue ``data`` on ``topic``, as :meth:`Broker.publish` does (same checks, same
        refusals); returns ``PublishResult(msg_id, created, status)``. A ``group`` is
        checked and kept on the record; the stub claims FIFO and has no group limits."""
        TopicKeys.of(topic)  # InvalidTopic, as the Redis broker's key names refuse it
        check_publish(data, self.max_depth, notify, priority, timeout=timeout, delay=delay,
                      max_retries=max_retries, result_ttl=result_ttl, failure_ttl=failure_ttl)
        mode = check_dedup(dedup_key, dedup_mode, dedup_ttl, dedup_extend)
        group = check_group(group)
        msg_id = new_id() if msg_id is None else check_id(msg_id)
        known = self._record(topic, msg_id)
        if known is not None:
            return PublishResult(msg_id, False, known.status)
        now = self._now()
        slot, replaced = None, ""
        if mode is not None:
            assert dedup_key is not None
            slot = self._dedup.get((topic, dedup_key))
            if slot is not None and slot[1] is not None and slot[1] <= now:
                slot = None  # the key expired
            if slot is not None:
                holder = self._record(topic, slot[0])
                held = holder.status if holder is not None else ""
                if mode == "throttle" or (mode == "until_done"
                                          and held in (QUEUED, DELAYED, STARTED)):
                    outcome = "throttled" if mode == "throttle" else "duplicate"
                    return PublishResult(slot[0], False, held,
                                         {"outcome": outcome, "msg_id": slot[0]})
                if mode == "debounce" and held in (QUEUED, DELAYED):
                    replaced = slot[0]
        if not force and not self.serves(topic):
            raise NoConsumer(topic)
        status = DELAYED if delay > 0 else QUEUED
        self._records[(topic, msg_id)] = Message(
            id=msg_id, topic=topic, data=json.loads(_json(data)), status=status,
            max_retries=int(max_retries), timeout=float(timeout),
            result_ttl=float(result_ttl), failure_ttl=float(failure_ttl), created_at=now,
            enqueued_at=None if delay > 0 else now, reqid=reqid or "", notify=notify or "",
            priority=priority, dedup_key=dedup_key or "", dedup_mode=mode or "",
            trace=check_trace(trace), group=group or "")
        if delay > 0:
            self._delayed.setdefault(topic, {})[msg_id] = now + delay
        elif at_front:
            self._queues.setdefault(topic, deque()).appendleft(msg_id)
        else:
            self._queues.setdefault(topic, deque()).append(msg_id)
        if mode is None:
            return PublishResult(msg_id, True, status)
        assert dedup_key is not None
        if replaced:
            self._records.pop((topic, replaced), None)
            self._delayed.get(topic, {}).pop(replaced, None)
            queue = self._queues.get(topic, deque())
            if replaced in queue:
                queue.remove(replaced)
        keep = slot is not None and mode == "debounce" and not dedup_extend
        expires = slot[1] if keep and slot is not None else (
            now + dedup_ttl if dedup_ttl > 0 else None)
        self._dedup[(topic, dedup_key)] = (msg_id, expires)
        dedup = {"outcome": "replaced" if replaced else "new", "msg_id": msg_id}
        if replaced:
            dedup["replaced"] = replaced
        return PublishResult(msg_id, True, status, dedup)

    def publish_many(self, messages: Iterable[dict[str, Any]], *, force: bool = False,
                     chunk: int = 500, **defaults: Any) -> list[PublishResult]:
        """:meth:`publish` of each item (a dict with ``topic``, ``data`` and options), as
        :meth:`Broker.publish_many`: every item checked first, a topic without consumer
        answers status ``no_consumer`` instead of raising."""
        items = [{**defaults, **item} for item in messages]
        for i, item in enumerate(items):
            if "topic" not in item or "data" not in item:
                raise TypeError(f"message {i}: a dict with topic and data is required")
            check_publish(item["data"], self.max_depth, item.get("notify"),
                          item.get("priority", 0), timeout=item.get("timeout", 1.0),
                          delay=item.get("delay", 0.0), max_retries=item.get("max_retries", 0),
                          result_ttl=item.get("result_ttl", 0.0),
                          failure_ttl=item.get("failure_ttl", 0.0))
        out = []
        for item in items:
            topic, data = item.pop("topic"), item.pop("data")
            try:
                out.append(self.publish(topic, data, force=force, **item))
            except NoConsumer:
                out.append(PublishResult(item.get("msg_id") or "", False, NO_CONSUMER))
        return out

    def get(self, msg_id: str, topic: str | None = None) -> Message | None:
        """A copy of the record of ``msg_id`` (of ``topic``, or found by id alone)."""
        if topic is None:
            found = [m for (_, mid), m in self._records.items() if mid == msg_id]
            return replace(found[0]) if found else None
        msg = self._record(topic, msg_id)
        return replace(msg) if msg is not None else None

    def counts(self, topic: str) -> dict[str, int]:
        """How many messages of ``topic`` are in each status."""
        sizes = dict.fromkeys(STATUSES, 0)
        for (t, _), msg in self._records.items():
            if t == topic:
                sizes[msg.status] += 1
        return sizes

    # -- inspection ---------------------------------------------------------------------
    def serves(self, topic: str) -> bool:
        """True when some consumer (an attached service, ``serves``, a heartbeat) serves
        ``topic``: publishing to it needs no ``force``."""
        return any(topic in topics for topics in self._served.values())

    def queued(self, topic: str | None = None) -> dict[str, list[str]]:
        """``{topic: ids waiting in order}`` (ready ones, then delayed ones by due time),
        for ``topic`` or every topic with waiting messages."""
        topics = [topic] if topic is not None else sorted(set(self._queues) |
                                                          set(self._delayed))
        out = {}
        for t in topics:
            later = sorted(self._delayed.get(t, {}).items(), key=lambda item: item[1])
            ids = list(self._queues.get(t, ())) + [mid for mid, _ in later]
            if ids or topic is not None:
                out[t] = ids
        return out

    def messages(self, topic: str | None = None, status: str | None = None) -> list[Message]:
        """Copies of the records kept, oldest first, filtered by topic and status."""
        return [replace(m) for (t, _), m in self._records.items()
                if (topic is None or t == topic) and (status is None or m.status == status)]

    # -- running ------------------------------------------------------------------------
    def _consumer_of(self, topic: str) -> Consumer | None:
        return next((c for c in self._consumers if topic in c.routes and topic in c.topics),
                    None)

    def process(self, topic: str | None = None) -> int:
        """Run every message that is ready now on the attached services' topics (or on
        ``topic``), one at a time through the consumer, until none is ready; returns how
        many ran. Messages published meanwhile (by a handler) run too; delayed ones and
        scheduled retries wait for their time (see :meth:`join`)."""
        ran = 0
        while True:
            batch = 0
            for consumer in self._consumers:
                for t in consumer.topics:
                    if topic is not None and t != topic:
                        continue
                    for msg in self.claim(t, consumer.worker_id, 1):
                        consumer.process(msg)
                        batch += 1
            if not batch:
                return ran
            ran += batch
            if ran > MAX_MESSAGES:
                raise RuntimeError(f"still processing after {ran} messages: a handler "
                                   "that publishes to its own topic forever?")

    def join(self, topic: str | None = None) -> int:
        """:meth:`process`, also running delayed messages and scheduled retries at once
        (the clock skips ahead to each one's due time), until nothing waits on the served
        topics; returns how many ran. Retries get no backoff wait, only their order."""
        ran = self.process(topic)
        while True:
            due = [when for t, waiting in self._delayed.items()
                   if (topic is None or t == topic) and self._consumer_of(t) is not None
                   for when in waiting.values()]
            if not due:
                return ran
            self._skew += max(0.0, min(due) - self._now())
            ran += self.process(topic)
            if ran > MAX_MESSAGES:
                raise RuntimeError(f"still joining after {ran} messages")

    # -- BrokerLike: consuming ----------------------------------------------------------
    def _promote(self, topic: str) -> None:
        waiting = self._delayed.get(topic)
        if not waiting:
            return
        now = self._now()
        for msg_id, when in sorted(waiting.items(), key=lambda item: item[1]):
            if when <= now:
                del waiting[msg_id]
                msg = self._record(topic, msg_id)
                if msg is not None:
                    msg.status, msg.enqueued_at = QUEUED, now
                    self._queues.setdefault(topic, deque()).append(msg_id)

    def claim(self, topic: str, worker_id: str, count: int = 1) -> list[Message]:
        """Take up to ``count`` ready messages (due delayed ones first become ready): each
        counts an attempt and gets a new fencing token."""
        self._promote(topic)
        queue = self._queues.get(topic, deque())
        out: list[Message] = []
        while queue and len(out) < max(1, count):
            msg = self._record(topic, self._pop_highest(topic, queue))
            if msg is None:  # deleted meanwhile
                continue
            msg.attempts += 1
            msg.token += 1
            msg.status, msg.started_at, msg.worker = STARTED, self._now(), worker_id
            msg.progress = msg.error_kind = None  # a new attempt starts clean, as on Redis
            out.append(replace(msg))
        return out

    def _pop_highest(self, topic: str, queue: deque[str]) -> str:
        """Take the first id of the highest priority (FIFO within one, as on Redis)."""
        best, best_at = None, 0
        for at, msg_id in enumerate(queue):
            msg = self._record(topic, msg_id)
            p = msg.priority if msg is not None else 0
            if best is None or p > best:
                best, best_at = p, at
        msg_id = queue[best_at]
        del queue[best_at]
        return msg_id

    def _fenced(self, msg: Message) -> Message | None:
        """The record still started under ``msg``'s claim, else None (fenced out)."""
        record = self._record(msg.topic, msg.id)
        if record is None or record.status != STARTED or record.token != msg.token:
            return None
        return record

    def complete(self, msg: Message, result: dict[str, Any] | None = None,
                 cost: float = 0.0) -> bool:
        """Store the result and mark finished; False when fenced out."""
        return self.complete_many([(msg, result, cost)])[0]

    def complete_many(self, done: Sequence[tuple[Message, dict[str, Any] | None, float]]
                      ) -> list[bool]:
        """:meth:`complete` for several messages; a result that is not JSON raises, as it
        does on Redis (the consumer then fails the message)."""
        stored = [(msg, json.loads(_json(result)) if result is not None else None, cost)
                  for msg, result, cost in done]
        out = []
        for msg, result, cost in stored:
            record = self._fenced(msg)
            if record is None:
                out.append(False)
                continue
            if record.result_ttl <= 0:
                del self._records[(msg.topic, msg.id)]
            else:
                record.status, record.ended_at = FINISHED, self._now()
                record.result, record.cost = result, round(cost, 6)
            out.append(True)
        return out

    def fail(self, msg: Message, error: str, result: dict[str, Any] | None = None,
             cost: float = 0.0, retry: bool = True,
             kind: ErrorKind | str = ErrorKind.EXCEPTION) -> str:
        """Record a failed attempt: ``"delayed"`` (a retry, while ``attempts <=
        max_retries``), ``"failed"`` (dead-lettered) or ``""`` (fenced out); ``kind`` is
        kept as ``error_kind`` (ValueError outside :class:`ErrorKind`), as on Redis."""
        kind = ErrorKind(kind)
        stored = json.loads(_json(result)) if result is not None else None
        record = self._fenced(msg)
        if record is None:
            return ""
        now = self._now()
        record.ended_at, record.error, record.result = now, error, stored
        record.error_kind = kind.value
        record.cost = round(cost, 6)
        if retry and msg.attempts <= msg.max_retries:
            record.status = DELAYED
            delay = backoff(msg.attempts, self.min_backoff, self.max_backoff)
            self._delayed.setdefault(msg.topic, {})[msg.id] = now + delay
            return DELAYED
        if record.failure_ttl <= 0:
            del self._records[(msg.topic, msg.id)]
        else:
            record.status = FAILED
        return FAILED

    def progress(self, msg: Message, done: int, total: int, note: str = "") -> bool:
        """Keep how far the running attempt got, normalized and fenced as on Redis."""
        record = self._fenced(msg)
        if record is None:
            return False
        record.progress = normalize_progress(done, total, note)
        return True

    def notify(self, msg: Message, status: str, stat: str, cost: float = 0.0) -> str | None:
        """Publish the completion notice ``{msg_id, topic, status, stat, cost}`` to
        ``msg.notify`` (forced), as the Redis broker does."""
        if not msg.notify:
            return None
        data = {"msg_id": msg.id, "topic": msg.topic, "status": status, "stat": stat,
                "cost": round(cost, 6)}
        return self.publish(msg.notify, data, force=True, reqid=msg.reqid or None,
                            result_ttl=NOTICE_RESULT_TTL).msg_id

    def batch_ended(self, msg: Message, outcome: str) -> list[str]:
        """Batches are the Redis broker's (the stub publishes none): nothing to count."""
        return []

    def extend(self, msg: Message, seconds: float | None = None) -> bool:
        """True while ``msg`` is still started under its claim (leases never lapse here)."""
        return self._fenced(msg) is not None

    def release(self, msgs: Iterable[Message]) -> int:
        """Hand claimed messages back to the front of their queues, attempt uncounted."""
        n = 0
        for msg in reversed(list(msgs)):
            record = self._fenced(msg)
            if record is not None:
                record.status, record.attempts = QUEUED, record.attempts - 1
                self._queues.setdefault(msg.topic, deque()).appendleft(msg.id)
                n += 1
        return n

    def reap(self, topic: str) -> int:
        """Nothing to reap: leases never lapse in the stub."""
        return 0

    def heartbeat(self, worker_id: str, topics: Iterable[str],
                  info: dict[str, Any] | None = None, ttl: float | None = None,
                  serving: bool = True) -> float:
        """Mark ``topics`` served by ``worker_id`` (or not, when not ``serving``)."""
        self._served[worker_id] = set(topics) if serving else set()
        return self._now()

    def unregister(self, worker_id: str, topics: Iterable[str]) -> None:
        """``worker_id`` serves nothing any more."""
        self._served.pop(worker_id, None)
