"""``/baichuan/*``: publish to the queue, fetch and await results, inspect and clean topics.

Every reply is ``{"stat": ..., **data}``. Refusals (the framework's ``Refusal``, raised by
``queue_admin`` or mapped from queue / Redis errors by the service's QueueRefusals middleware)
answer a specific stat, the reason in ``x-reason`` and an HTTP code from
:data:`~butterfly_baichuan.refusals.HTTP_CODES`
(400 bad topic/status, 404 not found, 409 conflict / no consumer / not failed, 413 too
large, 503 Redis unreachable; ``ERR_WAIT_TIMEOUT`` stays 200). Bad or missing parameters
are the framework's ``ERR_BAD_PARAMS`` (400).

None of these routes is a queue topic (``topic=False``): they *are* the queue's front
door, and a ``wait`` served from the queue would pin a consumer thread for a minute.

Who may do what (destructive queue actions need the admin token, as every admin route;
docs/handlers.md "Admin handlers"):

- anyone: ``publish``, ``publish_batch``, ``msg``, ``wait``, ``topics``, ``msgs``,
  ``workers``, ``batch``, ``batches``;
- operator (a write): ``requeue`` of one failed message, ``batch_cancel``;
- admin (the admin role: token, JWT or trusted proxy's ``X-Role``): ``requeue`` with
  ``all=true`` (re-runs a whole dead-letter queue at once), ``delete`` (destroys a
  message someone else published, whatever its status), ``purge`` (destroys many),
  ``set_topic_limits`` (throttles a whole topic for every publisher) and ``bulk`` unless
  ``dry_run`` (a dry run only counts: operator); ``topic_limits`` (reading them) is open
  like ``topics``.
"""

from __future__ import annotations

import threading
from typing import Any

from butterfly_baichuan import batches as batch_admin
from butterfly_baichuan import queue_admin
from butterfly_baichuan.config import BaichuanConfig
from butterfly_baichuan.refusals import ERR_TOO_MANY_WAITS
from butterfly_common import Refusal, Request, api, mq, retstat, runtime
from butterfly_common.mq import DEFAULT_FAILURE_TTL, DEFAULT_RESULT_TTL, DEFAULT_TIMEOUT
from butterfly_common.mq.batch import DEFAULT_BATCH_TTL
from butterfly_common.roles import identity_of, require_role

OK = retstat.OK


@api(topic=False)
def publish(req: Request, topic: str, data: dict, msg_id: str | None = None,
            delay: float = 0.0, at_front: bool = False, timeout: float = DEFAULT_TIMEOUT,
            max_retries: int = 0, result_ttl: float = DEFAULT_RESULT_TTL,
            failure_ttl: float = DEFAULT_FAILURE_TTL, force: bool = False,
            notify: str | None = None, priority: int = 0, dedup_key: str | None = None,
            dedup_mode: str | None = None, dedup_ttl: float = 0.0,
            dedup_extend: bool = False, group: str | None = None) -> Any:
    """Queue a call of handler ``topic`` with ``data`` (a JSON object of its parameters).

    Answers ``msg_id``, ``created`` (false when ``msg_id`` was already published on this
    topic: publishing is idempotent by id, and an id is unique per topic) and ``status``.
    Refused: ERR_BAD_PARAMS (``data`` nested deeper than BUTTERFLY_MAX_JSON_DEPTH or not
    valid Unicode), ERR_BAD_TOPIC, ERR_MSG_TOO_LARGE (over BAICHUAN_MAX_MESSAGE_BYTES),
    ERR_NO_CONSUMER (no live consumer serves the topic; ``force=true`` queues anyway),
    ERR_MQ_UNAVAILABLE (the topic's shard is unreachable). The caller's request id is
    stored with the message, so the consumer's access log carries the same ``x-reqid``.
    ``notify`` (a topic): when the message finishes or finally fails, the consumer publishes
    ``{msg_id, topic, status, stat, cost}`` there (at-least-once; sweep for notices lost to
    a crash). ``priority`` (an integer -100..100, default 0): consumers take the highest
    priority ready first, FIFO within one priority (``at_front``: the head of its own
    priority); anything else is ERR_BAD_PARAMS.
    ``dedup_key`` (1..200 printable non-space chars, independent of ``msg_id``)
    deduplicates per topic in ``dedup_mode``: ``until_done`` (default: while the message
    holding the key is queued, delayed or started, a publish answers that one),
    ``throttle`` (one message per key per ``dedup_ttl`` seconds) or ``debounce`` (within
    ``dedup_ttl`` the latest publish replaces the one not started yet; ``dedup_extend``
    restarts the ttl). The answer then has ``dedup: {outcome: new|replaced|duplicate|
    throttled, msg_id: <the standing message>, replaced: <id>}``, and ``msg_id``/
    ``status`` are the standing message's. Inconsistent dedup options are ERR_BAD_PARAMS.
    ``group`` (1..64 chars of ``A-Z a-z 0-9 _ . : @ -``, e.g. a tenant): the message's
    concurrency group; consumers serve a topic's groups round-robin, each under its
    ``max_running`` when ``set_topic_limits`` gives one. A bad name is ERR_BAD_PARAMS.
    """
    max_bytes = runtime.get_config(BaichuanConfig).max_message_bytes
    return OK, queue_admin.publish(
        mq.broker(), topic, data, max_bytes=max_bytes, msg_id=msg_id, delay=delay,
        at_front=at_front, timeout=timeout, max_retries=max_retries, result_ttl=result_ttl,
        failure_ttl=failure_ttl, reqid=req.reqid, force=force, notify=notify,
        priority=priority, dedup_key=dedup_key, dedup_mode=dedup_mode, dedup_ttl=dedup_ttl,
        dedup_extend=dedup_extend, group=group)


@api(topic=False)
def publish_many(req: Request, messages: list, force: bool = False) -> Any:
    """Queue up to 1000 messages in one call, pipelined (far fewer round trips than one
    ``publish`` each). ``messages`` is a list of objects, each with ``topic`` and ``data``
    and any per-message option of ``publish`` (``msg_id``, ``delay``, ``at_front``,
    ``timeout``, ``max_retries``, ``result_ttl``, ``failure_ttl``, ``notify``,
    ``priority``, ``dedup_key``, ``dedup_mode``, ``dedup_ttl``, ``dedup_extend``,
    ``group``);
    ``force`` is for all. Every item is checked as ``publish`` checks it before anything
    is queued: a refusal (ERR_BAD_PARAMS, ERR_BAD_TOPIC, ERR_MSG_TOO_LARGE,
    ERR_MSG_ID_RESERVED) names ``messages[i]`` and queues nothing. Each message is still
    idempotent by its ``msg_id`` and deduplicated by its ``dedup_key``. Answers
    ``created`` (how many were queued) and ``results``: per item, in order, ``msg_id``,
    ``created``, ``status`` (``no_consumer``: no live consumer serves its topic, nothing
    queued for it) and ``dedup`` when it had a key.
    """
    max_bytes = runtime.get_config(BaichuanConfig).max_message_bytes
    return OK, queue_admin.publish_many(mq.broker(), messages, max_bytes=max_bytes,
                                        reqid=req.reqid, force=force)


@api(topic=False)
def publish_batch(req: Request, messages: list, on_success: str | None = None,
                  on_complete: str | None = None, batch_id: str | None = None,
                  data: dict | None = None, ttl: float = DEFAULT_BATCH_TTL,
                  force: bool = False) -> Any:
    """Queue up to 1000 messages (items as ``publish_many`` takes them, without
    ``msg_id``: a batch names its messages ``batch.<batch_id>.<n>``) as one batch, on any
    topics. ``on_success`` (a topic) is published to exactly once when every message
    finished with stat OK; ``on_complete`` exactly once when all ended (finished, failed
    or canceled). The callback's data: ``batch_id``, ``kind`` (success | complete),
    ``state``, ``total``, ``ok``, ``notok`` (finished with another stat), ``failed``
    and ``data`` (this call's ``data``). ``batch_id`` (1..100 chars of
    ``A-Z a-z 0-9 _ . : @ -``, default: generated) makes the call idempotent; the record
    is kept ``ttl`` seconds (default 7 days). Answers ``batch_id``, ``created`` and per
    item ``results``; an item without a live consumer (``no_consumer``) counts failed.
    Bad input: ERR_BAD_PARAMS / ERR_BAD_TOPIC / ERR_MSG_TOO_LARGE naming the item."""
    max_bytes = runtime.get_config(BaichuanConfig).max_message_bytes
    return OK, batch_admin.publish_batch(mq.broker(), messages, max_bytes=max_bytes,
                                         on_success=on_success, on_complete=on_complete,
                                         batch_id=batch_id, data=data, ttl=ttl,
                                         reqid=req.reqid, force=force)


@api(topic=False)
def batch(req: Request, batch_id: str) -> Any:
    """A batch's record: ``state`` (opening, open, ended, canceled), ``total``,
    ``pending``, ``finished`` (``ok`` + ``notok``), ``failed``, ``progress`` (0..1),
    the callback topics and ``callbacks`` ({success, complete}: waiting, due, sent, or ""
    without one), times (epoch s). Reading it first counts the messages that ended
    without telling it (a consumer killed at the wrong moment, a lost message
    dead-lettered by the reaper). ERR_BATCH_NOT_FOUND (404) when unknown or expired."""
    return OK, batch_admin.get(mq.broker(), batch_id)


@api(topic=False)
def batches(req: Request, page_index: int = 1, page_size: int = 20) -> Any:
    """Batches, newest first, as ``data: {total, list}`` (each as ``batch`` answers)."""
    return OK, {"data": batch_admin.page(mq.broker(), page_index, page_size)}


@api(write=True)
def batch_cancel(req: Request, batch_id: str) -> Any:
    """Operator: cancel a batch. Its queued and delayed messages become dead letters with
    ``error_kind`` canceled; started ones run to their end. ``on_success`` never fires
    for a canceled batch, ``on_complete`` fires once when all ended (``state``
    canceled). Idempotent; answers the record as ``batch``."""
    return OK, batch_admin.cancel(mq.broker(), batch_id)


@api(topic=False)
def msg(req: Request, msg_id: str, topic: str | None = None) -> Any:
    """A message's record: topic, data, status, attempts, result, error, worker, cost and
    times (epoch seconds). ERR_MSG_NOT_FOUND once deleted or expired. Without ``topic``
    the id is looked up in the best-effort id index (a shard holding it may be down);
    with ``topic`` only the topic's own shard is asked."""
    return OK, queue_admin.get_message(mq.broker(), msg_id, topic).to_dict()


_waiters: tuple[int, threading.BoundedSemaphore] | None = None
_waiters_lock = threading.Lock()


def _wait_slots(limit: int) -> threading.BoundedSemaphore:
    """This process's slots for ``wait`` calls (BAICHUAN_MAX_WAITERS)."""
    global _waiters
    with _waiters_lock:
        if _waiters is None or _waiters[0] != limit:
            _waiters = (limit, threading.BoundedSemaphore(limit))
        return _waiters[1]


@api(topic=False)
def wait(req: Request, msg_id: str, timeout: float = 10.0, topic: str | None = None) -> Any:
    """Wait up to ``timeout`` seconds (capped by BAICHUAN_MAX_WAIT, default 60) for the
    message to finish or fail, then answer its record as ``msg`` does. When time runs out
    the stat is ERR_WAIT_TIMEOUT with HTTP 200 and the current record: not an error, ask
    again. At most BAICHUAN_MAX_WAITERS waits run at once per worker process: another is
    ERR_TOO_MANY_WAITS (429) at once."""
    config = runtime.get_config(BaichuanConfig)
    slots = _wait_slots(config.max_waiters)
    if not slots.acquire(blocking=False):
        raise Refusal(ERR_TOO_MANY_WAITS, f"{config.max_waiters} waits already hold this "
                      "worker's threads (BAICHUAN_MAX_WAITERS); retry later, or poll msg",
                      http=429)
    try:
        return OK, queue_admin.wait(mq.broker(), msg_id, timeout, config.max_wait, topic)
    finally:
        slots.release()


@api(write=True)
def requeue(req: Request, topic: str, msg_id: str | None = None, all: bool = False) -> Any:
    """Put a failed message (``msg_id``) back in the queue with fresh attempts; ``all=true``
    requeues every failed message of the topic and needs the admin role (a bulk re-run).
    A write: the operator role. ERR_MSG_NOT_FAILED when the message is not a dead
    letter."""
    if all:
        require_role(req, "admin")
    return OK, queue_admin.requeue(mq.broker(), topic, msg_id, all)


@api(admin=True)
def delete(req: Request, topic: str, msg_id: str) -> Any:
    """Admin: remove one message of ``topic`` whatever its status (a consumer still
    running it is fenced out: its late result is ignored)."""
    return OK, queue_admin.delete(mq.broker(), topic, msg_id)


@api(admin=True)
def purge(req: Request, topic: str, status: str = "failed") -> Any:
    """Admin: delete every message of ``topic`` in ``status`` (queued, delayed, started,
    finished, failed, or all); answers ``purged``."""
    return OK, queue_admin.purge(mq.broker(), topic, status)


@api(write=True)
def bulk(req: Request, topic: str, action: str, status: str, error: str | None = None,
         since: float | None = None, until: float | None = None, stat: str | None = None,
         dry_run: bool = False, step: int = 1000, cursor: str | None = None,
         max_steps: int | None = None) -> Any:
    """``action`` (``requeue``: failed or finished; ``delete``: any status; ``cancel``:
    queued or delayed, which become failed with ``error_kind`` ``canceled``) on every
    message of ``topic`` in ``status`` matching the filter: ``error`` (a case-sensitive
    substring of its error), ``since``/``until`` (epoch seconds, inclusive, on ``ended_at``
    for failed/finished, ``started_at`` for started, ``created_at`` for queued/delayed),
    ``stat`` (the handler's answered stat); no condition takes the whole status.
    ``dry_run=true`` only counts (the operator role); acting needs the admin role and is
    audited. Runs in steps of ``step`` ids (1..10000), one short Redis call each, and
    answers when done: ``matched``, ``acted`` (0 on a dry run), ``scanned``, ``steps``
    and the ``filter``.

    In parts, with progress in between: ``max_steps`` (1..1000) ends this call after that
    many steps; the answer adds ``run`` (the run's id), ``part`` (1, 2, ...), ``done`` and
    ``cursor`` (an opaque string; null once done). Call again with the same topic,
    action, status, filter and dry_run plus ``cursor`` to continue the same run (the
    counts are this call's: add them up). Every acting part is audited with the run id.
    Without ``cursor`` and ``max_steps`` the whole run is one call, as before.

    Bad action, times, step, max_steps, or a malformed cursor or one answered for another
    topic, action, status, filter or dry_run: ERR_BAD_PARAMS; a status the action does
    not take: ERR_BAD_STATUS."""
    if not dry_run:
        require_role(req, "admin")
    return OK, queue_admin.bulk(mq.broker(), topic, action, status, error=error, since=since,
                                until=until, stat=stat, dry_run=dry_run, step=step,
                                who=_who(req), cursor=cursor, max_steps=max_steps)


@api(topic=False)
def topic_limits(req: Request, topic: str) -> Any:
    """``topic``'s limits: ``max_running``, ``rate`` per ``rate_window`` seconds (null:
    off), the live ``running`` count and ``window_used`` (claims in the current window),
    ``held`` (claims a limit cut short while messages were ready) with ``held_at``,
    ``set_at`` / ``set_by``; for concurrency groups ``group_max_running``,
    ``group_limits`` ({group: max_running}), ``group_held`` (claims that passed over a
    group at its cap) with ``group_held_at``, ``groups_ready`` (groups with ready
    messages) and ``group_running`` ({group: started now})."""
    return OK, queue_admin.topic_limits(mq.broker(), topic)


@api(admin=True)
def set_topic_limits(req: Request, topic: str, max_running: int | None = None,
                     rate: int | None = None, rate_window: float | None = None,
                     group_max_running: int | None = None,
                     group_limits: dict | None = None) -> Any:
    """Admin: replace ``topic``'s limits, enforced by every consumer's claim at once.
    ``max_running`` (1..1000000): at most that many of its messages started at once,
    fleet-wide; ``rate`` (1..1000000) per ``rate_window`` seconds (0.001..86400, whole ms,
    default 1): at most that many claims per fixed window of the Redis clock. An omitted
    limit is off; neither clears them (the claim path is unlimited again). A held-back
    message stays queued. ``group_max_running`` (1..1000000): at most that many started
    at once per concurrency group (a publish's ``group``); ``group_limits``
    ({group: 1..1000000}, at most 1000 groups): that group's own cap instead. Claims serve
    groups round-robin, passing over one at its cap. Answers the limits as
    ``topic_limits`` does; audited (the ``butterfly.baichuan.audit`` log and ``set_by``).
    Bad values: ERR_BAD_PARAMS."""
    return OK, queue_admin.set_topic_limits(mq.broker(), topic, max_running, rate,
                                            rate_window, _who(req),
                                            group_max_running=group_max_running,
                                            group_limits=group_limits)


def _who(req: Request) -> str:
    """The caller's name for the audit trail (its role's credential, e.g. admin-token,
    when it has none)."""
    caller = identity_of(req)
    return caller.username if caller.username != "-" else caller.via


@api(topic=False)
def topics(req: Request, page_index: int = 1, page_size: int = 100) -> Any:
    """Known topics, each with queued/delayed/started/finished/failed counts and its live
    ``consumers``, as ``data: {total, list}``."""
    return OK, {"data": queue_admin.topics_page(mq.broker(), page_index, page_size)}


@api(topic=False)
def msgs(req: Request, topic: str, status: str = "queued", page_index: int = 1,
         page_size: int = 20, order: str = "newest") -> Any:
    """One page of ``topic``'s messages in ``status``, ``order`` newest (default) or
    oldest first, as ``data: {total, list}``; each record shows its ``priority``. Queued
    messages oldest first are in claim order: highest priority first, FIFO within one."""
    return OK, {"data": queue_admin.msgs_page(mq.broker(), topic, status, page_index,
                                              page_size, order)}


@api(topic=False)
def workers(req: Request, page_index: int = 1, page_size: int = 100) -> Any:
    """Registered consumers: id, topics, info, ttl, last_seen (epoch s) and ``alive``, as
    ``data: {total, list}``."""
    return OK, {"data": queue_admin.workers_page(mq.broker(), page_index, page_size)}
