"""The queue protocol: publish, claim, complete/fail, lease extension, reaping and admin.

Every state change is ONE Lua script over keys of ONE topic's hash tag, timed by the
server clock, so it is atomic on plain Redis, through Twemproxy and on Redis Cluster.

Delivery is at-least-once. A claimed message is *leased*: its deadline in ``started`` is
``now + min(timeout + settle_grace, lease)``; consumers :meth:`Broker.extend` it while
working (never past ``started_at + timeout + settle_grace``). The grace is the consumer's
time to interrupt a handler past its ``timeout`` and record that failure: without it a
reaper could hand a timed-out message out again as *lost* while its failure is being
written. :meth:`Broker.reap` puts messages whose lease ran out back at
the front of the queue, and dead-letters them once ``attempts > max_retries +
lost_grace`` so a message that kills its consumer cannot loop forever.

Each claim increments the record's fencing ``token``; complete/fail/extend/release only
act while the record is still ``started`` with the caller's token, so a consumer that lost
its lease (reaped, released, deleted) cannot overwrite the newer attempt's outcome.
"""

from __future__ import annotations

import builtins
import json
import logging
import random
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from redis.cluster import RedisCluster
from redis.exceptions import RedisError

from .. import nesting
from ..redis_client import pipeline
from . import batch as mqbatch
from . import index, scripts
from .bulk import STEP as BULK_STEP
from .bulk import BulkCounts, BulkFilter, run_bulk
from .errors import NoConsumer
from .keys import (
    FIELDS,
    TOPICS,
    TopicKeys,
    check_dedup,
    check_group,
    check_id,
    check_priority,
    check_topic,
    id_key,
    to_ms,
)
from .limits import Limits, check_group_limits, check_limits
from .limits import from_reply as limits_from_reply
from .message import STATUSES, ErrorKind, Message, PublishResult, new_id, new_ids
from .probe import describe, unreachable
from .progress import normalize as normalize_progress
from .registry import HEARTBEAT_TTL, Registry

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 180.0
DEFAULT_RESULT_TTL = 86400.0
DEFAULT_FAILURE_TTL = 7 * 86400.0
LEASE = 30.0
#: Time past a message's ``timeout`` its consumer has to interrupt it and record the
#: failure before a reaper may treat the attempt as lost.
SETTLE_GRACE = 2.0
MAX_CLAIM = 1000
#: How long a completion notice's own record is kept once handled (it is tiny, but many).
NOTICE_RESULT_TTL = 600.0
#: A forced publish adds its topic to the registry at most this often per broker (the
#: registry never drops a topic, so repeating the ZADD NX on every message only cost a
#: command per publish).
REGISTER_EVERY = 1.0
#: Messages per pipelined round trip of :meth:`Broker.publish_many`.
PUBLISH_CHUNK = 500
#: The status of a :meth:`Broker.publish_many` item refused for want of a live consumer
#: (``publish`` raises :class:`NoConsumer` instead).
NO_CONSUMER = "no_consumer"
#: The per-message options of a publish and their defaults (``publish_many`` items).
PUBLISH_OPTIONS: dict[str, Any] = {
    "msg_id": None, "delay": 0.0, "at_front": False, "timeout": DEFAULT_TIMEOUT,
    "max_retries": 0, "result_ttl": DEFAULT_RESULT_TTL, "failure_ttl": DEFAULT_FAILURE_TTL,
    "reqid": None, "notify": None, "priority": 0, "dedup_key": None, "dedup_mode": None,
    "dedup_ttl": 0.0, "dedup_extend": False, "group": None,
}


#: Arguments per message of ``publish_many.lua``: publish.lua's ARGV with the dedup four,
#: the trace, the group and the batch.
_WIDTH = 21
_NO_DEDUP = ["", "", 0, 0]


@dataclass(slots=True)  # not frozen: a frozen dataclass is 2x dearer to build, per publish
class _Prepared:
    """One checked publish, ready to go out as a script call."""

    topic: str
    msg_id: str
    generated: bool
    idx_ttl: int
    keys: list[str]
    args: list[Any]


#: json.dumps with options builds an encoder per call; every publish and result uses this
_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def backoff(attempts: int, min_backoff: float = 1.0, max_backoff: float = 300.0) -> float:
    """Retry delay after the ``attempts``-th try: doubling from ``min_backoff``, capped at
    ``max_backoff``, with jitter in [50 %, 100 %] so retries do not stampede."""
    base = min(max_backoff, min_backoff * 2 ** max(0, attempts - 1))
    return float(base * random.uniform(0.5, 1.0))  # noqa: S311 - jitter, not secrets


_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")


def check_trace(trace: str | None) -> str:
    """``trace`` when it is a W3C ``traceparent``, else "": tracing never fails a publish,
    and nothing but a traceparent is stored (the record is read by the console)."""
    return trace if trace and _TRACEPARENT.match(trace) else ""


def check_publish(data: Any, max_depth: int | None, notify: str | None,
                  priority: int = 0, *, timeout: float, delay: float = 0.0,
                  max_retries: int = 0, result_ttl: float = 0.0,
                  failure_ttl: float = 0.0) -> None:
    """The checks of a publish that come before any key is touched, shared by every
    broker: ``data`` a dict within the nesting limit, a valid ``notify`` topic, ``priority``
    an int in MIN_PRIORITY..MAX_PRIORITY, and ``timeout`` > 0 with ``delay``,
    ``max_retries`` and the ttls >= 0."""
    check_priority(priority)
    if not isinstance(data, dict):
        raise TypeError(f"message data must be a dict, not {type(data).__name__}")
    if not timeout > 0 or delay < 0 or max_retries < 0 or result_ttl < 0 or failure_ttl < 0:
        raise ValueError("timeout must be > 0; delay, max_retries and ttls >= 0")
    nesting.check(data, max_depth, "data")
    if notify:
        check_topic(notify)


class Broker:
    """Queue operations over a client from :func:`butterfly_common.redis_client.make_redis`.

    ``lease``: visibility window of a claimed message before reap may hand it to another
    consumer. ``heartbeat_ttl``: how fresh a consumer heartbeat must be for publish to
    accept a topic. ``min_backoff``/``max_backoff``: retry delay bounds (exponential with
    jitter). ``lost_grace``: redeliveries after lost leases beyond ``max_retries``.
    ``settle_grace``: seconds past a message's ``timeout`` before its lease lapses.
    ``index_slack``: extra life of the id->topic index beyond the record's own TTL.
    ``max_depth``: nesting limit of published data (None: the process's
    ``BUTTERFLY_MAX_JSON_DEPTH``).
    """

    def __init__(self, client: Any, *, lease: float = LEASE,
                 heartbeat_ttl: float = HEARTBEAT_TTL, min_backoff: float = 1.0,
                 max_backoff: float = 300.0, lost_grace: int = 2,
                 index_slack: float = 3600.0, batch: int = 500,
                 max_depth: int | None = None, settle_grace: float = SETTLE_GRACE) -> None:
        self.client = client
        self.lease = lease
        self.settle_grace = settle_grace
        self.heartbeat_ttl = heartbeat_ttl
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.lost_grace = lost_grace
        self.index_slack = index_slack
        self.batch = batch
        self.max_depth = max_depth
        self.registry = Registry(client, heartbeat_ttl)
        self._keys: dict[str, TopicKeys] = {}
        self._registered: dict[str, float] = {}  # topic -> when a forced publish added it
        # A Redis Cluster pipeline fails as a whole when one node of it is down, so there
        # the best-effort writes on other slots (the id index, the topic registry) go
        # after a publish instead of in its round trip: a dead node's slots must not fail
        # the publishes of topics on live ones.
        self._split_bookkeeping = isinstance(client, RedisCluster)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> Broker:
        """A broker on a fresh Twemproxy-safe client for ``url`` (see ``make_redis``)."""
        from ..redis_client import make_redis

        return cls(make_redis(url), **options)

    def keys(self, topic: str) -> TopicKeys:
        """Key names of ``topic`` (validated once, then cached)."""
        k = self._keys.get(topic)
        if k is None:
            k = self._keys[topic] = TopicKeys.of(topic)
        return k

    # -- publishing -------------------------------------------------------------------

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
        """Queue ``data`` (the handler's kwargs) on ``topic``.

        ``group`` (a short name, see :func:`.keys.check_group`): the message's concurrency
        group, e.g. its tenant. Claims serve a topic's groups round-robin, each group under
        its ``max_running`` if the topic's limits set one (see :mod:`.limits`); ungrouped
        messages go first, and a publish without a group is exactly what it was before.

        ``priority`` (an int, -100..100, default 0): a claim takes the highest priority
        ready, FIFO within one priority; ``at_front`` puts the message at the head of its
        own priority. Strict: while higher priorities keep coming, lower ones wait (no
        aging). A priority-0 publish touches exactly the keys it did before priorities.

        A caller-chosen ``msg_id`` makes publishing idempotent *per topic*: a second
        publish of a live id on the same topic queues nothing and returns
        ``created=False`` with the current status; the same id on another topic is another
        message. Raises :class:`NoConsumer` when no consumer heartbeat of ``topic`` is
        fresh, unless ``force``; :class:`~butterfly_common.nesting.NestingError` (a
        ValueError) when ``data`` is nested deeper than the limit or holds a lone surrogate.

        The publish itself is ONE script over the topic's keys. The id index and, for a
        forced publish, the topic registry are global keys on other shards: they ride in
        the same round trip after the script and their failure is ignored (see
        :mod:`.index`), so a topic's publishes depend on its own shard only.

        ``notify`` names a topic to be told when the message finishes or finally fails:
        the consumer publishes :func:`notice` there after recording the result (see
        ``consumer.py``). At-least-once: a notice may come twice, and one lost to a
        consumer crash between recording and notifying never comes, so the publisher
        must also sweep for messages that ended without telling it.

        ``dedup_key`` (independent of ``msg_id``) deduplicates by the caller's key, per
        topic, in ``dedup_mode`` (``until_done`` by default, ``throttle``, ``debounce``;
        ``dedup_ttl`` seconds, ``dedup_extend``: see :data:`.keys.DEDUP_MODES` and
        docs/queue.md); the result's ``dedup`` says which message stands and why. Still
        the one script: the key carries the topic's hash tag.

        ``trace``: the publisher's W3C ``traceparent`` (the tracing middleware sets it),
        kept in the record for the consumer's span.
        """
        one = self._prepare(topic, data, msg_id=msg_id, delay=delay, at_front=at_front,
                            timeout=timeout, max_retries=max_retries, result_ttl=result_ttl,
                            failure_ttl=failure_ttl, reqid=reqid, force=force, notify=notify,
                            priority=priority, dedup_key=dedup_key, dedup_mode=dedup_mode,
                            dedup_ttl=dedup_ttl, dedup_extend=dedup_extend,
                            trace=trace, group=group)
        split = self._split_bookkeeping
        register = force and self._register_due(topic)
        pipe = pipeline(self.client)
        call = scripts.queue_in(pipe, "publish", one.keys, one.args)
        extra = []
        if one.generated and not split:
            # generated ids are unique (48 random bits per ms): index in the same trip
            index.queue_write(pipe, one.msg_id, topic, one.idx_ttl)
            extra.append(1)
        if register and not split:
            pipe.zadd(TOPICS, {topic: 0}, nx=True)
            extra.append(len(extra) + 1)
        results = scripts.settle(self.client, pipe.execute(raise_on_error=False), {0: call},
                                 best_effort=extra)
        index.ignore_errors(results, extra, "publish bookkeeping")
        result, write, forget = self._outcome(one, results[0])
        if register and split:
            self._register(topic)
        if result.status == NO_CONSUMER:
            index.forget(self.client, forget, topic)
            raise NoConsumer(topic)
        if write:
            index.write(self.client, one.msg_id, topic, one.idx_ttl)
        index.forget(self.client, forget, topic)
        return result

    def _prepare(self, topic: str, data: dict[str, Any], *, msg_id: str | None,
                 delay: float, at_front: bool, timeout: float, max_retries: int,
                 result_ttl: float, failure_ttl: float, reqid: str | None, force: bool,
                 notify: str | None, priority: int, dedup_key: str | None,
                 dedup_mode: str | None, dedup_ttl: float, dedup_extend: bool,
                 trace: str | None = None, group: str | None = None,
                 fresh_id: str | None = None, batch: str | None = None) -> _Prepared:
        """Check one publish and build its script call (nothing touches Redis);
        ``fresh_id``: the generated id to use when ``msg_id`` is None."""
        k = self.keys(topic)
        check_publish(data, self.max_depth, notify, priority, timeout=timeout, delay=delay,
                      max_retries=max_retries, result_ttl=result_ttl, failure_ttl=failure_ttl)
        mode = check_dedup(dedup_key, dedup_mode, dedup_ttl, dedup_extend)
        group = check_group(group)
        idx_ttl = to_ms(delay + max(result_ttl, failure_ttl) + self.index_slack)
        generated = msg_id is None
        msg_id = (fresh_id or new_id()) if msg_id is None else check_id(msg_id)
        args = [msg_id, topic, _json(data), to_ms(delay), int(at_front), to_ms(timeout),
                int(max_retries), to_ms(result_ttl), to_ms(failure_ttl), reqid or "",
                int(force), to_ms(self.heartbeat_ttl), notify or "", priority]
        keys = [k.queue, k.delayed, k.workers, k.msg(msg_id), k.prios]
        if mode is not None:
            assert dedup_key is not None
            keys.append(k.dedup(dedup_key))
            args += [dedup_key, mode, to_ms(dedup_ttl), int(dedup_extend)]
        traceparent = check_trace(trace)
        if traceparent or group or batch:  # ARGV[19..21]; without them the script stores ''
            args += [*(() if mode is not None else _NO_DEDUP), traceparent]
        if group or batch:
            args.append(group or "")
        if batch:
            args.append(batch)
        return _Prepared(topic, msg_id, generated, idx_ttl, keys, args)

    def _outcome(self, one: _Prepared, reply: Any) -> tuple[PublishResult, bool, list[str]]:
        """The result of one publish script's ``reply``, whether the id index still needs
        writing (a created message whose id was not indexed in the publish's own trip: a
        caller-chosen one, or any on Redis Cluster) and the ids whose index entries must
        go (a replaced message; a generated id indexed but never created)."""
        indexed = one.generated and not self._split_bookkeeping  # in the publish's trip
        code, status = int(reply[0]), reply[1]
        if code < 0:
            return (PublishResult(one.msg_id, False, NO_CONSUMER),
                    False, [one.msg_id] if indexed else [])
        write = code == 1 and not indexed
        if len(reply) < 4:
            return PublishResult(one.msg_id, code == 1, status), write, []
        outcome, standing = reply[2], reply[3]
        dedup = {"outcome": outcome, "msg_id": standing}
        gone = [reply[4]] if len(reply) > 4 and reply[4] else []
        if gone:
            dedup["replaced"] = reply[4]
        if code == 0 and indexed:
            gone.append(one.msg_id)  # indexed in the same trip, never created
        return PublishResult(standing, code == 1, status, dedup), write, gone

    def publish_many(self, messages: Iterable[dict[str, Any]], *, force: bool = False,
                     chunk: int = PUBLISH_CHUNK, **defaults: Any) -> builtins.list[
                         PublishResult]:
        """Publish several messages in pipelined round trips (``chunk`` per trip): each
        item is a dict of :meth:`publish`'s arguments (``topic`` and ``data`` required,
        any other option per message), ``defaults`` fill in the options an item leaves
        out; ``force`` is for all.

        Every item is checked before anything is sent: a bad one raises (ValueError,
        TypeError, InvalidTopic) with its index and nothing is published. Each message
        goes through the very steps of :meth:`publish` (``publish_one`` of the prelude,
        one ``publish_many.lua`` call per topic and trip), so idempotent by its ``msg_id``
        (a repeated id answers ``created=False``) and deduplicated by its ``dedup_key``.
        No exception for a topic without a live consumer: that item's result is
        ``created=False`` with status ``no_consumer`` (nothing queued), the others are
        published. Results come in the order of ``messages``.
        """
        prepared = self._prepare_all(builtins.list(messages), force, defaults)
        chunk = max(1, int(chunk))
        out: builtins.list[PublishResult] = []
        for start in range(0, len(prepared), chunk):
            out += self._publish_chunk(prepared[start:start + chunk], force)
        return out

    def _prepare_all(self, messages: builtins.list[Any], force: bool,
                     defaults: dict[str, Any], batch: str | None = None
                     ) -> builtins.list[_Prepared]:
        """Check every item of a publish_many (or, with ``batch``, a publish_batch: the
        ids are the batch's, an item's own ``msg_id`` is refused) before anything is sent;
        a bad one raises with its index."""
        allowed = set(PUBLISH_OPTIONS) - ({"msg_id"} if batch else set())
        unknown = set(defaults) - allowed
        if unknown:
            raise TypeError(f"unknown option(s) {', '.join(sorted(unknown))}")
        prepared: builtins.list[_Prepared] = []
        fresh = iter(new_ids(len(messages)))
        for i, item in enumerate(messages):
            if not isinstance(item, dict) or "topic" not in item or "data" not in item:
                raise TypeError(f"message {i}: a dict with topic and data is required")
            options = {**defaults, **item}
            bad = set(options) - {"topic", "data", *allowed}
            if bad:
                raise TypeError(f"message {i}: unknown option(s) {', '.join(sorted(bad))}")
            topic, data = options.pop("topic"), options.pop("data")
            if batch:
                options["msg_id"] = mqbatch.member_id(batch, i)
            try:
                prepared.append(self._prepare(topic, data, force=force, fresh_id=next(fresh),
                                              batch=batch, **{**PUBLISH_OPTIONS, **options}))
            except (ValueError, TypeError) as exc:
                raise type(exc)(f"message {i}: {exc}") from None
        return prepared

    def _publish_chunk(self, batch: builtins.list[_Prepared], force: bool
                       ) -> builtins.list[PublishResult]:
        """One pipelined round trip: one ``publish_many`` script per topic (each message
        in it exactly a ``publish``), the index entries of generated ids and the registry
        entries of forced topics; then one more for the index entries of caller-chosen ids
        that were created and those to forget (only when there are)."""
        by_topic: dict[str, builtins.list[int]] = {}
        for at, one in enumerate(batch):
            by_topic.setdefault(one.topic, []).append(at)
        pipe = pipeline(self.client)
        calls: dict[int, tuple[Any, ...]] = {}
        best_effort: builtins.list[int] = []
        n = 0
        for topic, ats in by_topic.items():
            k = self.keys(topic)
            args: builtins.list[Any] = [k.msg_prefix, k.dedup_prefix, _WIDTH]
            for at in ats:
                one_args = batch[at].args
                args += one_args
                if len(one_args) < _WIDTH - 3:
                    args += _NO_DEDUP
                # no trace / group / batch: the options come in that order
                args += [""] * (_WIDTH - max(len(one_args), _WIDTH - 3))
            calls[n] = scripts.queue_in(pipe, "publish_many",
                                        [k.queue, k.delayed, k.workers, k.prios], args)
            n += 1
        split = self._split_bookkeeping
        for one in batch:
            if one.generated and not split:
                index.queue_write(pipe, one.msg_id, one.topic, one.idx_ttl)
                best_effort.append(n)
                n += 1
        if force:
            for topic in by_topic:
                if not self._register_due(topic):
                    continue
                if split:
                    self._register(topic)
                    continue
                pipe.zadd(TOPICS, {topic: 0}, nx=True)
                best_effort.append(n)
                n += 1
        results = scripts.settle(self.client, pipe.execute(raise_on_error=False), calls,
                                 best_effort=best_effort)
        index.ignore_errors(results, best_effort, "publish bookkeeping")
        replies: builtins.list[Any] = [None] * len(batch)
        for (_, ats), flat in zip(by_topic.items(), (results[i] for i in calls), strict=True):
            for j, at in enumerate(ats):
                reply = flat[5 * j:5 * j + 5]
                replies[at] = reply if reply[2] else reply[:2]
        out = []
        after = pipeline(self.client)
        pending = 0
        for one, reply in zip(batch, replies, strict=True):
            result, write, forget = self._outcome(one, reply)
            out.append(result)
            if write:
                index.queue_write(after, one.msg_id, one.topic, one.idx_ttl)
                pending += 1
            for gone in forget:
                after.execute_command("DEL", id_key(gone))
                pending += 1
        if pending:
            try:
                index.ignore_errors(after.execute(raise_on_error=False), list(range(pending)),
                                    "publish_many id index")
            except RedisError as exc:  # best effort, like every index write
                log.warning("publish_many id index writes failed: %s", exc)
        return out

    def _register(self, topic: str) -> None:
        """Add ``topic`` to the registry on its own, best effort (Redis Cluster)."""
        try:
            self.client.zadd(TOPICS, {topic: 0}, nx=True)
        except RedisError as exc:
            log.warning("registering topic %s failed: %s", topic, exc)

    def _register_due(self, topic: str) -> bool:
        """True when this broker has not added ``topic`` to the registry in the last
        REGISTER_EVERY seconds (and counts this as adding it)."""
        now = time.monotonic()
        if now - self._registered.get(topic, -REGISTER_EVERY) < REGISTER_EVERY:
            return False
        if len(self._registered) > 10_000:  # a process publishing to ever new topics
            self._registered.clear()
        self._registered[topic] = now
        return True

    # -- consuming --------------------------------------------------------------------

    def claim(self, topic: str, worker_id: str, count: int = 1) -> list[Message]:
        """Take up to ``count`` messages (due delayed ones are promoted first), highest
        priority first, leased to ``worker_id``. Each claim counts an attempt and issues a
        new fencing token."""
        k = self.keys(topic)
        count = max(1, min(int(count), MAX_CLAIM))
        flat = scripts.run(self.client, "claim",
                           [k.queue, k.delayed, k.started, k.prios, k.limits],
                           [count, worker_id, to_ms(self.lease), k.msg_prefix, MAX_CLAIM,
                            to_ms(self.settle_grace)])
        return Message.many(flat)

    def _index_ttl(self, msg: Message, extra: float = 0.0) -> int:
        return to_ms(max(msg.result_ttl, msg.failure_ttl) + extra + self.index_slack)

    def complete(self, msg: Message, result: dict[str, Any] | None = None,
                 cost: float = 0.0) -> bool:
        """Store the result and mark finished (kept ``result_ttl``). False when fenced out:
        the message was reaped, released or deleted since this consumer claimed it."""
        return self.complete_many([(msg, result, cost)])[0]

    def complete_many(self, done: Sequence[tuple[Message, dict[str, Any] | None, float]]
                      ) -> list[bool]:
        """:meth:`complete` for several messages in ONE round trip (a consumer's runners
        that finish together share it); each is fenced on its own."""
        pipe = pipeline(self.client)
        calls: dict[int, tuple[Any, ...]] = {}
        best_effort: list[int] = []
        for msg, result, cost in done:
            k = self.keys(msg.topic)
            calls[len(calls) + len(best_effort)] = scripts.queue_in(
                pipe, "complete", [k.started, k.finished, k.msg(msg.id)],
                [msg.id, msg.token, _json(result) if result is not None else "",
                 f"{cost:.6f}"])
            if not self._index_outlives(msg):
                index.queue_write(pipe, msg.id, msg.topic, self._index_ttl(msg))
                best_effort.append(len(calls) + len(best_effort))
        results = scripts.settle(self.client, pipe.execute(raise_on_error=False), calls,
                                 best_effort=best_effort)
        index.ignore_errors(results, best_effort, "id index refresh")
        return [bool(results[i]) for i in calls]

    def _index_outlives(self, msg: Message) -> bool:
        """True when the id index written at publish outlives ``msg``'s finished record,
        so completing it need not refresh the index (a command, and through Twemproxy a
        second shard, per message). The publish gave the index ``max(result_ttl,
        failure_ttl) + index_slack`` from ``created_at``; the record lives ``result_ttl``
        from its completion, at most ``timeout`` after ``started_at``. Both times are the
        server's clock; half the slack is kept as margin."""
        if msg.created_at is None or msg.started_at is None:
            return False
        return msg.started_at - msg.created_at + msg.timeout < self.index_slack / 2

    def notify(self, msg: Message, status: str, stat: str, cost: float = 0.0) -> str | None:
        """Publish the completion notice of ``msg`` to the topic it names (``msg.notify``).

        The notice is ``{msg_id, topic, status, stat, cost}``: ``status`` is ``finished`` or
        ``failed`` (only final outcomes are told, never a scheduled retry), ``stat`` the
        handler's stat. Published with ``force`` (the publisher's consumers may be down for
        a moment; the notice waits for them) and the message's reqid. Returns the notice's
        id, or None when ``msg`` asked for no notice.
        """
        if not msg.notify:
            return None
        data = {"msg_id": msg.id, "topic": msg.topic, "status": status, "stat": stat,
                "cost": round(cost, 6)}
        return self.publish(msg.notify, data, force=True, reqid=msg.reqid or None,
                            result_ttl=NOTICE_RESULT_TTL).msg_id

    def backoff(self, attempts: int) -> float:
        """Retry delay after the ``attempts``-th try (see :func:`backoff`)."""
        return backoff(attempts, self.min_backoff, self.max_backoff)

    def fail(self, msg: Message, error: str, result: dict[str, Any] | None = None,
             cost: float = 0.0, retry: bool = True,
             kind: ErrorKind | str = ErrorKind.EXCEPTION) -> str:
        """Record a failed attempt; returns ``"delayed"`` (a retry is scheduled),
        ``"failed"`` (dead-lettered, kept ``failure_ttl``) or ``""`` (fenced out).

        Retries while ``attempts <= max_retries``; ``retry=False`` dead-letters at once
        (bad parameters will not get better by retrying). ``kind`` (an :class:`ErrorKind`,
        ValueError for anything else) is stored as ``error_kind`` by the same script
        that stores ``error``."""
        kind = ErrorKind(kind)
        k = self.keys(msg.topic)
        delay = self.backoff(msg.attempts) if retry and msg.attempts <= msg.max_retries \
            else -1.0
        pipe = self.client.pipeline(transaction=False)
        call = scripts.queue_in(
            pipe, "fail", [k.started, k.delayed, k.failed, k.msg(msg.id)],
            [msg.id, msg.token, error, _json(result) if result is not None else "",
             f"{cost:.6f}", to_ms(delay) if delay >= 0 else -1, kind.value])
        index.queue_write(pipe, msg.id, msg.topic, self._index_ttl(msg, max(delay, 0.0)))
        results = scripts.settle(self.client, pipe.execute(raise_on_error=False), {0: call},
                                 best_effort=[1])
        index.ignore_errors(results, [1], "id index refresh")
        return results[0] or ""

    def extend(self, msg: Message, seconds: float | None = None) -> bool:
        """Push the lease deadline to ``now + seconds`` (default: the broker lease), capped
        at ``started_at + timeout + settle_grace``. False when fenced out or the timeout
        has passed."""
        k = self.keys(msg.topic)
        seconds = self.lease if seconds is None else seconds
        return bool(scripts.run(self.client, "extend", [k.started, k.msg(msg.id)],
                                [msg.id, msg.token, to_ms(seconds), to_ms(self.settle_grace)]))

    def progress(self, msg: Message, done: int, total: int, note: str = "") -> bool:
        """Store how far the running attempt of ``msg`` got (see :mod:`.progress`).

        One command on the record's key, fenced like :meth:`complete`: False when this
        consumer no longer holds the message (reaped, ended, deleted). A new claim clears
        it, so a retry never shows the progress of the attempt before.
        """
        k = self.keys(msg.topic)
        value = _json(normalize_progress(done, total, note))
        return bool(scripts.run(self.client, "progress", [k.msg(msg.id)], [msg.token, value]))

    def release(self, msgs: Iterable[Message]) -> int:
        """Hand claimed but unstarted messages back to the front of their queues, in their
        original order, without counting the attempt (graceful shutdown)."""
        by_topic: dict[str, list[Message]] = {}
        for m in msgs:
            by_topic.setdefault(m.topic, []).append(m)
        n = 0
        for topic, group in by_topic.items():
            k = self.keys(topic)
            args: list[Any] = [k.msg_prefix]
            for m in group:
                args += [m.id, m.token]
            n += int(scripts.run(self.client, "release", [k.queue, k.started, k.prios],
                                     args))
        return n

    def reap(self, topic: str) -> int:
        """Return lease-expired messages to the front of the queue (or dead-letter them
        with ``error_kind`` ``lost``, see the module doc) and trim expired finished/failed
        records. Atomic, so any number of consumers may call it concurrently. Returns the
        expired count handled."""
        k = self.keys(topic)
        returned, _trimmed = scripts.run(
            self.client, "reap", [k.queue, k.started, k.finished, k.failed, k.prios],
            [k.msg_prefix, self.batch, self.lost_grace, ErrorKind.LOST.value])
        return int(returned)

    # -- administration ---------------------------------------------------------------

    def requeue(self, topic: str, msg_id: str, at_front: bool = False) -> bool:
        """Put one dead letter back in the queue with fresh attempts."""
        k = self.keys(topic)
        n, _ = scripts.run(self.client, "requeue", [k.queue, k.failed, k.prios],
                           [k.msg_prefix, int(at_front), 1, msg_id])
        return bool(n)

    def requeue_all(self, topic: str, at_front: bool = False) -> int:
        """Requeue every dead letter of ``topic`` (in bounded batches); returns how many."""
        k = self.keys(topic)
        total = 0
        while True:
            n, scanned = scripts.run(self.client, "requeue", [k.queue, k.failed, k.prios],
                                     [k.msg_prefix, int(at_front), self.batch])
            total += int(n)
            if int(scanned) < self.batch:
                return total

    def bulk(self, topic: str, action: str, status: str, *, error: str | None = None,
             since: float | None = None, until: float | None = None,
             stat: str | None = None, dry_run: bool = False, step: int = BULK_STEP,
             at_front: bool = False,
             progress: Callable[[BulkCounts], None] | None = None,
             cursor: str | None = None, max_steps: int | None = None) -> BulkCounts:
        """``action`` (``requeue``, ``delete``, ``cancel``) on every message of ``topic``
        in ``status`` matching the filter (see :mod:`.bulk`: ``error`` substring,
        ``since``/``until`` epoch seconds, the handler's ``stat``), in steps of at most
        ``step`` ids, one script call each, ``progress`` called after each. ``dry_run``
        only counts. Returns the counts (``matched``, ``acted``, ``scanned``, ``steps``);
        ValueError for an action, status or filter that does not fit.

        In parts: ``max_steps`` (1..1000) returns after that many steps, the counts'
        ``cursor`` set while the walk is not done; the same call with ``cursor=`` that
        cursor continues the run (same filter, else ValueError). Without either, the
        whole run in this call."""
        flt = BulkFilter(status, error, since, until, stat)
        return run_bulk(self.client, self.keys(topic), action, flt, dry_run=dry_run,
                        step=step, at_front=at_front, index_slack=self.index_slack,
                        progress=progress, cursor=cursor, max_steps=max_steps)

    def delete(self, topic: str, msg_id: str) -> bool:
        """Remove a message whatever its status; True if its record existed."""
        k = self.keys(topic)
        gone = int(scripts.run(self.client, "delete", [k.queue, k.delayed, k.started,
                                                        k.finished, k.failed, k.msg(msg_id),
                                                        k.prios],
                               [msg_id]))
        if gone:
            index.forget(self.client, [msg_id], topic)
        return bool(gone)

    def purge(self, topic: str, status: str = "failed") -> int:
        """Delete every message in ``status`` (``queued``, ``delayed``, ``started``,
        ``finished``, ``failed`` or ``all``) in bounded batches; returns how many."""
        k = self.keys(topic)
        statuses = STATUSES if status == "all" else (status,)
        total = 0
        for st in statuses:
            kind = "list" if st == "queued" else "zset"
            containers = [k.queue, k.prios] if kind == "list" else [k.by_status(st)]
            while True:
                ids = scripts.run(self.client, "purge", containers,
                                  [k.msg_prefix, kind, self.batch])
                index.forget(self.client, list(ids), topic)
                total += len(ids)
                if len(ids) < self.batch:
                    break
        return total

    def set_limits(self, topic: str, max_running: int | None = None,
                   rate: int | None = None, rate_window: float | None = None,
                   set_by: str = "", *, group_max_running: int | None = None,
                   group_limits: dict[str, int] | None = None) -> Limits:
        """Replace ``topic``'s limits (see :mod:`.limits`): at most ``max_running``
        messages started at once fleet-wide, at most ``rate`` claims per fixed window of
        ``rate_window`` seconds (default 1). None turns a limit off; both None clears the
        topic's limits, and its claims are unlimited again at once. ValueError for bad
        values. ``set_by`` is kept with the limits (who changed them). Returns the new
        limits with the live figures. ``group_max_running`` caps each concurrency group's
        started messages, ``group_limits`` ({group: cap}) single groups' (see
        :mod:`.limits`)."""
        running, per, window_ms = check_limits(max_running, rate, rate_window)
        every, caps = check_group_limits(group_max_running, group_limits)
        k = self.keys(topic)
        args: builtins.list[Any] = ["set", "" if running is None else running,
                                    "" if per is None else per,
                                    "" if window_ms is None else window_ms, set_by,
                                    "" if every is None else every]
        for group, cap in caps.items():
            args += [group, cap]
        reply = scripts.run(self.client, "limits", [k.limits, k.started], args)
        return limits_from_reply(reply)

    def clear_limits(self, topic: str, set_by: str = "") -> Limits:
        """Drop every limit of ``topic`` (see :meth:`set_limits`)."""
        return self.set_limits(topic, None, None, None, set_by)

    def limits(self, topic: str) -> Limits:
        """``topic``'s limits with the running count, this window's claims and how many
        claims a limit held back (one script, one consistent snapshot)."""
        k = self.keys(topic)
        return limits_from_reply(scripts.run(self.client, "limits", [k.limits, k.started],
                                             ["get"]))

    def counts(self, topic: str) -> dict[str, int]:
        """Sizes of the five containers of ``topic`` (one consistent snapshot)."""
        k = self.keys(topic)
        sizes = scripts.run(self.client, "counts",
                            [k.queue, k.delayed, k.started, k.finished, k.failed, k.prios],
                            [])
        return dict(zip(STATUSES, (int(n) for n in sizes), strict=True))

    def get(self, msg_id: str, topic: str | None = None) -> Message | None:
        """The message ``msg_id`` of ``topic``; without ``topic`` found through the
        best-effort id index (None when the index does not know the id)."""
        if topic is None:
            topic = index.lookup(self.client, msg_id)
            if topic is None:
                return None
        values = self.client.hmget(self.keys(topic).msg(msg_id), list(FIELDS))
        return Message.from_values(values) if values[0] else None

    def get_many(self, items: Iterable[str | tuple[str, str]]) -> list[Message | None]:
        """Several messages at once, in the order asked, None for unknown ones.

        ``items`` are ``(msg_id, topic)`` pairs or bare ids (looked up in the id index
        first, one more pipelined trip). The records are read in one non-transactional
        pipeline: one round trip, which Twemproxy and Redis Cluster fan out per shard.
        Raises the first store error (a dead shard), so "unknown" always means unknown.
        """
        pairs: list[list[Any]] = [[item, None] if isinstance(item, str) else list(item)
                                  for item in items]
        bare = [i for i, (_, topic) in enumerate(pairs) if topic is None]
        for i, topic in zip(bare, index.lookup_many(self.client, [pairs[i][0] for i in bare]),
                            strict=True):
            pairs[i][1] = topic
        wanted = [(mid, topic) for mid, topic in pairs if topic is not None]
        found: dict[tuple[str, str], Message | None] = {}
        if wanted:
            pipe = self.client.pipeline(transaction=False)
            for mid, topic in wanted:
                pipe.hmget(self.keys(topic).msg(mid), list(FIELDS))
            for key, values in zip(wanted, pipe.execute(), strict=True):
                found[key] = Message.from_values(values) if values[0] else None
        return [found.get((mid, topic)) if topic is not None else None
                for mid, topic in pairs]

    def list(self, topic: str, status: str, page_index: int = 1, page_size: int = 20,
             newest_first: bool = True) -> tuple[int, list[Message]]:
        """One page of messages in ``status`` and the status' total. ``queued`` oldest
        first is claim order (highest priority first, FIFO within one), newest first its
        reverse; other statuses: newest = highest score (due time, lease deadline, expiry)."""
        k = self.keys(topic)
        page_index, page_size = max(1, int(page_index)), max(1, min(int(page_size), 1000))
        start = (page_index - 1) * page_size
        queued = status == "queued"
        reply = scripts.run(self.client, "list",
                            [k.queue, k.prios] if queued else [k.by_status(status)],
                            [k.msg_prefix, "list" if queued else "zset", start,
                             start + page_size - 1, int(newest_first)])
        return int(reply[0]), Message.many(reply[1:])

    # -- batches (see batch.py) ---------------------------------------------------------

    def publish_batch(self, messages: Sequence[dict[str, Any]], *,
                      on_success: str | None = None, on_complete: str | None = None,
                      batch_id: str | None = None, data: dict[str, Any] | None = None,
                      ttl: float = mqbatch.DEFAULT_BATCH_TTL, force: bool = False,
                      **defaults: Any) -> tuple[str, builtins.list[PublishResult]]:
        """Publish ``messages`` (``publish_many`` items without ``msg_id``) as one batch:
        ``on_success`` is told once when every one finished with stat OK, ``on_complete``
        once when all ended (see :mod:`.batch`); ``data`` rides along in the callbacks.
        Idempotent by ``batch_id``. Returns the batch id and the publish results."""
        items = builtins.list(messages)
        if not 1 <= len(items) <= mqbatch.MAX_BATCH:
            raise ValueError(f"a batch holds 1..{mqbatch.MAX_BATCH} messages")
        batch_id = mqbatch.check_batch_id(batch_id) if batch_id is not None else new_id()
        opened = mqbatch.Opening(batch_id, on_success, on_complete, data or {}, ttl)
        opened.check(self.max_depth)
        prepared = self._prepare_all(items, force, defaults, batch=batch_id)
        # a shard down (one of the topics', then the record's) refuses the batch before
        # anything of it is out; one lost from here on raises BatchIncomplete
        topics = builtins.list(dict.fromkeys(p.topic for p in prepared))
        down = unreachable(self.client, topics, max_topics=len(topics), registries=False)
        if down:
            raise RedisError(describe(down))
        opened.open(self.client, [mqbatch.member(p.topic, p.msg_id) for p in prepared])
        results: builtins.list[PublishResult] = []
        try:
            for start in range(0, len(prepared), PUBLISH_CHUNK):
                results += self._publish_chunk(prepared[start:start + PUBLISH_CHUNK], force)
            refused = [mqbatch.member(p.topic, p.msg_id) for p, r
                       in zip(prepared, results, strict=True) if r.status == NO_CONSUMER]
            mqbatch.opened(self, batch_id, refused)
        except RedisError as exc:
            raise mqbatch.BatchIncomplete(batch_id, exc) from exc
        return batch_id, results

    def batch_ended(self, msg: Message, outcome: str) -> builtins.list[str]:
        """Count the final ``outcome`` (ok, notok, failed) of ``msg`` in its batch, if
        it has one, and publish the callbacks that became due (see :mod:`.batch`)."""
        return mqbatch.ended(self, msg, outcome) if msg.batch else []

    def get_batch(self, batch_id: str, repair: bool = True) -> mqbatch.Batch:
        """The batch record, reconciled first unless ``repair`` is False
        (:class:`~.batch.BatchNotFound` when unknown)."""
        return mqbatch.get(self, batch_id, repair)

    def batches(self, page_index: int = 1, page_size: int = 20
                ) -> tuple[int, builtins.list[mqbatch.Batch]]:
        """One page of batches, newest first, and how many there are."""
        return mqbatch.page(self, page_index, page_size)

    def cancel_batch(self, batch_id: str) -> mqbatch.Batch:
        """Cancel a batch: its queued and delayed messages become dead letters
        (``error_kind`` canceled), started ones run to their end; ``on_complete`` fires
        once all ended, ``on_success`` never."""
        return mqbatch.reconcile(self, batch_id, cancel=True)

    def sweep_batches(self, limit: int = 100) -> int:
        """Reconcile up to ``limit`` open batches (baichuan's maintenance pass)."""
        return mqbatch.sweep(self, limit)

    # -- registry (delegated) ---------------------------------------------------------

    def heartbeat(self, worker_id: str, topics: Iterable[str],
                  info: dict[str, Any] | None = None,
                  ttl: float | None = None, serving: bool = True) -> float:
        """See :meth:`Registry.heartbeat`."""
        return self.registry.heartbeat(worker_id, topics, info, ttl, serving)

    def unregister(self, worker_id: str, topics: Iterable[str]) -> None:
        """See :meth:`Registry.unregister`."""
        self.registry.unregister(worker_id, topics)

    def workers(self) -> builtins.list[dict[str, Any]]:  # builtins: Broker.list shadows it
        """See :meth:`Registry.workers`."""
        return self.registry.workers()

    def topics(self) -> builtins.list[str]:
        """See :meth:`Registry.topics`."""
        return self.registry.topics()

    def prune_workers(self, ttl: float | None = None) -> int:
        """See :meth:`Registry.prune_workers`."""
        return self.registry.prune_workers(ttl)
