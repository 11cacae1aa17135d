"""What the baichuan HTTP API does, over a :class:`Broker`: checks, then one broker call.

Handlers stay one line each; everything a request can get wrong is decided here, as a
:class:`~butterfly_common.Refusal` with a specific stat (or a ``ParamError``,
which the framework answers as ``ERR_BAD_PARAMS``). Replies are plain dicts in the wire
shape, lists in the ``{"total": N, "list": [...]}`` shape.
"""

from __future__ import annotations

import json
import logging
import math
from collections import Counter
from typing import Any

from butterfly_common import Refusal, mq, nesting
from butterfly_common.mq import (
    DEFAULT_FAILURE_TTL,
    DEFAULT_RESULT_TTL,
    DEFAULT_TIMEOUT,
    FAILED,
    FINISHED,
    MAX_PRIORITY,
    MIN_PRIORITY,
    STATUSES,
    Broker,
    Message,
    PublishResult,
    check_group,
    check_priority,
)
from butterfly_common.mq.bulk import ACTIONS as BULK_ACTIONS
from butterfly_common.mq.bulk import BulkCounts, BulkFilter
from butterfly_common.mq.bulk import check as check_bulk
from butterfly_common.mq.keys import check_dedup, check_id, check_topic, reserved_by
from butterfly_common.mq.limits import check_group_limits, check_limits
from butterfly_common.paging import check_page
from butterfly_common.params import ParamError

from .refusals import (
    ERR_BAD_STATUS,
    ERR_BAD_TOPIC,
    ERR_MSG_ID_RESERVED,
    ERR_MSG_NOT_FAILED,
    ERR_MSG_NOT_FOUND,
    ERR_MSG_TOO_LARGE,
    ERR_WAIT_TIMEOUT,
)

log = logging.getLogger(__name__)
#: Who changed which topic's limits or acted on many messages (the admin's trail).
audit_log = logging.getLogger("butterfly.baichuan.audit")
#: A bulk action logs its progress every this many steps.
BULK_LOG_EVERY = 10

TERMINAL = (FINISHED, FAILED)
#: ``order`` of ``msgs``: newest first (the default, what a dashboard shows) or oldest.
ORDERS = {"newest": True, "oldest": False}
#: Upper bound of every duration a publisher may ask for (10 years): keeps the records'
#: millisecond arithmetic far inside what Lua's doubles hold exactly.
MAX_SECONDS = 10 * 365 * 86400.0
MAX_RETRIES = 1000


# -- checks ---------------------------------------------------------------------------

def check_publish_topic(topic: str) -> str:
    """A topic is a handler path ``/app/handler`` (``mq.topic_problem``): no braces (they
    would break the hash tag), no whitespace, at most 200 chars, and the route's shape, so
    a typo such as ``demo_api/hello`` is refused instead of creating a queue nobody
    serves."""
    problem = mq.topic_problem(topic)
    if problem is not None:
        raise Refusal(ERR_BAD_TOPIC, problem)
    return topic


def check_seconds(name: str, value: float, *, positive: bool = False) -> float:
    """A finite duration in range; NaN and infinity coerce from JSON/query strings."""
    low_ok = value > 0 if positive else value >= 0
    if not math.isfinite(value) or not low_ok or value > MAX_SECONDS:
        bound = "> 0" if positive else ">= 0"
        raise ParamError(f"invalid: {name} (must be {bound} and <= {MAX_SECONDS:g} seconds)")
    return value


def check_status(status: str, allowed: tuple[str, ...] = STATUSES) -> str:
    if status not in allowed:
        raise Refusal(ERR_BAD_STATUS, f"unknown status {status!r}; expected one of "
                                      f"{', '.join(allowed)}")
    return status


def serialized_size(data: dict[str, Any]) -> int:
    """Bytes of ``data`` as the broker stores it (compact UTF-8 JSON)."""
    return len(json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode())


# -- publishing and results -------------------------------------------------------------

def publish(broker: Broker, topic: str, data: dict[str, Any], *, max_bytes: int,
            msg_id: str | None = None, delay: float = 0.0, at_front: bool = False,
            timeout: float, max_retries: int = 0, result_ttl: float, failure_ttl: float,
            reqid: str | None = None, force: bool = False,
            notify: str | None = None, priority: int = 0, dedup_key: str | None = None,
            dedup_mode: str | None = None, dedup_ttl: float = 0.0,
            dedup_extend: bool = False, group: str | None = None) -> dict[str, Any]:
    """Queue ``data`` on ``topic``; a repeated ``msg_id`` answers ``created: false``, a
    publish with a ``dedup_key`` says which message stands in ``dedup``."""
    options: dict[str, Any] = {"msg_id": msg_id, "delay": delay, "at_front": at_front,
                               "timeout": timeout,
                               "max_retries": max_retries, "result_ttl": result_ttl,
                               "failure_ttl": failure_ttl, "notify": notify,
                               "priority": priority, "dedup_key": dedup_key,
                               "dedup_mode": dedup_mode, "dedup_ttl": dedup_ttl,
                               "dedup_extend": dedup_extend, "group": group}
    check_message(topic, data, max_bytes, options)
    # through mq.publish: the middleware see it (tracing's producer span and context)
    done = mq.publish(topic, data, via=broker, reqid=reqid, force=force, **options)
    return publish_answer(done)


def publish_answer(done: PublishResult) -> dict[str, Any]:
    """The wire shape of one publish's result."""
    answer: dict[str, Any] = {"msg_id": done.msg_id, "created": done.created,
                              "status": done.status}
    if done.dedup is not None:
        answer["dedup"] = done.dedup
    return answer


def check_message(topic: str, data: dict[str, Any], max_bytes: int,
                  options: dict[str, Any]) -> None:
    """Every check of one publish before the broker is asked (``options`` as
    :data:`PUBLISH_DEFAULTS`): ERR_BAD_TOPIC, ERR_MSG_ID_RESERVED, ERR_MSG_TOO_LARGE or
    ERR_BAD_PARAMS."""
    check_publish_topic(topic)
    if options["notify"]:
        check_publish_topic(options["notify"])
    check_seconds("delay", options["delay"])
    check_seconds("timeout", options["timeout"], positive=True)
    check_seconds("result_ttl", options["result_ttl"])
    check_seconds("failure_ttl", options["failure_ttl"])
    if not 0 <= options["max_retries"] <= MAX_RETRIES:
        raise ParamError(f"invalid: max_retries (must be 0..{MAX_RETRIES})")
    try:
        check_priority(options["priority"])
    except ValueError:
        raise ParamError(f"invalid: priority (must be an integer {MIN_PRIORITY}.."
                         f"{MAX_PRIORITY}, higher first)") from None
    check_seconds("dedup_ttl", options["dedup_ttl"])
    try:
        check_dedup(options["dedup_key"], options["dedup_mode"], options["dedup_ttl"],
                    options["dedup_extend"])
    except ValueError as exc:
        raise ParamError(f"invalid: dedup ({exc})") from None
    try:
        check_group(options["group"])
    except ValueError as exc:
        raise ParamError(f"invalid: group ({exc})") from None
    msg_id = options["msg_id"]
    if msg_id is not None:
        try:
            check_id(msg_id)
        except ValueError as exc:
            raise ParamError(f"invalid: msg_id ({exc})") from None
        owner = reserved_by(msg_id)
        if owner is not None:
            raise Refusal(ERR_MSG_ID_RESERVED, f"msg_id {msg_id[:40]!r} is reserved for "
                          f"{owner}'s own messages; choose another id")
    try:
        nesting.check(data, what="data")
    except nesting.NestingError as exc:
        raise ParamError(f"invalid: data ({exc})") from None
    size = serialized_size(data)
    if size > max_bytes:
        raise Refusal(ERR_MSG_TOO_LARGE, f"data is {size} bytes as JSON; the limit is "
                                         f"{max_bytes} (BAICHUAN_MAX_MESSAGE_BYTES)")


#: What a ``publish_many`` item may say besides ``topic`` and ``data``, with the JSON
#: types each accepts and its default (that of ``publish``).
PUBLISH_DEFAULTS: dict[str, Any] = {
    "msg_id": None, "delay": 0.0, "at_front": False, "timeout": DEFAULT_TIMEOUT,
    "max_retries": 0, "result_ttl": DEFAULT_RESULT_TTL, "failure_ttl": DEFAULT_FAILURE_TTL,
    "notify": None, "priority": 0, "dedup_key": None, "dedup_mode": None, "dedup_ttl": 0.0,
    "dedup_extend": False, "group": None,
}
_NUMBER = (int, float)
ITEM_TYPES: dict[str, tuple[type, ...]] = {
    "msg_id": (str,), "delay": _NUMBER, "at_front": (bool,), "timeout": _NUMBER,
    "max_retries": (int,), "result_ttl": _NUMBER, "failure_ttl": _NUMBER,
    "notify": (str,), "priority": (int,), "dedup_key": (str,), "dedup_mode": (str,),
    "dedup_ttl": _NUMBER, "dedup_extend": (bool,), "group": (str,),
}
#: Most messages one ``publish_many`` takes (the request body limit applies as well).
MAX_PUBLISH_MANY = 1000


def _item_options(i: int, item: object) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """Topic, data and full options of ``messages[i]`` as sent (JSON types checked)."""
    where = f"messages[{i}]"
    if not isinstance(item, dict):
        raise ParamError(f"invalid: {where} (must be an object with topic and data)")
    unknown = set(item) - {"topic", "data", *PUBLISH_DEFAULTS}
    if unknown:
        raise ParamError(f"invalid: {where} (unknown: {', '.join(sorted(unknown))})")
    topic, data = item.get("topic"), item.get("data")
    if not isinstance(topic, str):
        raise ParamError(f"invalid: {where}.topic (must be a string)")
    if not isinstance(data, dict):
        raise ParamError(f"invalid: {where}.data (must be an object)")
    options = dict(PUBLISH_DEFAULTS)
    for name, value in item.items():
        if name in ("topic", "data") or (value is None and PUBLISH_DEFAULTS[name] is None):
            continue
        types = ITEM_TYPES[name]
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise ParamError(f"invalid: {where}.{name} (wrong type)")
        options[name] = value
    return topic, data, options


def publish_many(broker: Broker, messages: list[Any], *, max_bytes: int,
                 reqid: str | None = None, force: bool = False) -> dict[str, Any]:
    """Queue up to MAX_PUBLISH_MANY messages in pipelined round trips: every item is
    checked as ``publish`` checks it before anything is queued (a refusal names
    ``messages[i]``); answers ``created`` (how many) and ``results`` in order, an item
    without a live consumer as ``created: false, status: no_consumer``."""
    if not messages:
        raise ParamError("invalid: messages (give at least one)")
    if len(messages) > MAX_PUBLISH_MANY:
        raise ParamError(f"invalid: messages (at most {MAX_PUBLISH_MANY} per call)")
    items = []
    for i, raw in enumerate(messages):
        topic, data, options = _item_options(i, raw)
        try:
            check_message(topic, data, max_bytes, options)
        except ParamError as exc:
            raise ParamError(str(exc).replace("invalid: ", f"invalid: messages[{i}].", 1)
                             ) from None
        except Refusal as exc:
            raise Refusal(exc.stat, f"messages[{i}]: {exc.reason}", http=exc.http) from None
        items.append({"topic": topic, "data": data, **options})
    # through mq.publish_many: the middleware see each message, as a publish
    results = [publish_answer(done) for done in mq.publish_many(
        items, via=broker, force=force, reqid=reqid)]
    return {"created": sum(1 for r in results if r["created"]), "results": results}


def not_found(msg_id: str, topic: str | None = None) -> Refusal:
    return Refusal(ERR_MSG_NOT_FOUND, f"no message {msg_id!r}"
                   + (f" on topic {topic!r}" if topic else "")
                   + " (never published, deleted, or its result expired)")


def get_message(broker: Broker, msg_id: str, topic: str | None = None) -> Message:
    """The message ``msg_id`` (looked up by id alone unless ``topic`` is given)."""
    msg = broker.get(msg_id, topic)
    if msg is None:
        raise not_found(msg_id, topic)
    return msg


def wait(broker: Broker, msg_id: str, timeout: float, max_wait: float,
         topic: str | None = None) -> dict[str, Any]:
    """Long-poll (``mq.wait``) until the message is finished or failed, for at most
    ``min(timeout, max_wait)`` seconds; ERR_WAIT_TIMEOUT with the current record when the
    time runs out."""
    if not math.isfinite(timeout) or timeout < 0:
        raise ParamError("invalid: timeout (must be >= 0 seconds)")
    limit = min(timeout, max_wait)
    msg = mq.wait(msg_id, limit, topic=topic, via=broker)
    if msg is None:
        raise not_found(msg_id, topic)
    if msg.status not in TERMINAL:
        raise Refusal(ERR_WAIT_TIMEOUT, f"message {msg_id} still {msg.status} after "
                                        f"{limit:g}s; wait again", msg.to_dict())
    return msg.to_dict()


# -- dead letters and clean-up -----------------------------------------------------------

def requeue(broker: Broker, topic: str, msg_id: str | None = None,
            requeue_all: bool = False) -> dict[str, Any]:
    """Put one failed message (``msg_id``) or every failed message of ``topic`` back in
    the queue with fresh attempts."""
    check_topic_name(topic)
    if requeue_all == (msg_id is not None):
        raise ParamError("give either msg_id or all=true")
    if requeue_all:
        return {"requeued": broker.requeue_all(topic)}
    assert msg_id is not None
    if not broker.requeue(topic, msg_id):
        msg = get_message(broker, msg_id, topic)
        raise Refusal(ERR_MSG_NOT_FAILED, f"message {msg_id} is {msg.status}; only failed "
                                          "messages can be requeued")
    return {"requeued": 1, "msg_id": msg_id}


def delete(broker: Broker, topic: str, msg_id: str) -> dict[str, Any]:
    """Remove one message whatever its status."""
    check_topic_name(topic)
    if not broker.delete(topic, msg_id):
        get_message(broker, msg_id, topic)  # raises the not-found refusal
    return {"deleted": 1, "msg_id": msg_id}


def purge(broker: Broker, topic: str, status: str) -> dict[str, Any]:
    """Delete every message of ``topic`` in ``status`` (or ``all``)."""
    check_topic_name(topic)
    check_status(status, (*STATUSES, "all"))
    return {"purged": broker.purge(topic, status)}


def bulk(broker: Broker, topic: str, action: str, status: str, *, error: str | None,
         since: float | None, until: float | None, stat: str | None, dry_run: bool,
         step: int, who: str, cursor: str | None = None,
         max_steps: int | None = None) -> dict[str, Any]:
    """``action`` on every message of ``topic`` in ``status`` matching the filter
    (:meth:`Broker.bulk`), in bounded steps, progress logged every BULK_LOG_EVERY steps;
    answers the counts. A real run (not ``dry_run``) is audited with ``who``, the filter,
    the counts and the run id. In parts (``cursor`` or ``max_steps`` given) it answers the
    run id, the part's number, ``cursor`` (None when done) and ``done`` too, and each
    acting part is audited. ERR_BAD_TOPIC, ERR_BAD_STATUS (unknown, or not one ``action``
    takes), ERR_BAD_PARAMS (the action, the times, the step, ``max_steps``, a malformed
    cursor or one of another topic, action, status, filter or mode)."""
    check_topic_name(topic)
    if action not in BULK_ACTIONS:
        raise ParamError(f"invalid: action (expected one of {', '.join(BULK_ACTIONS)})")
    check_status(status)
    if status not in BULK_ACTIONS[action]:
        raise Refusal(ERR_BAD_STATUS, f"{action} takes status "
                                      f"{' or '.join(BULK_ACTIONS[action])}, not {status}")
    flt = BulkFilter(status, error or None, since, until, stat or None)
    try:
        check_bulk(action, flt, step)
    except ValueError as exc:
        raise ParamError(f"invalid: filter ({exc})") from None
    parts = cursor is not None or max_steps is not None

    def progress(counts: BulkCounts) -> None:
        if counts.steps % BULK_LOG_EVERY == 0:
            log.info("bulk %s %s on %s: %d scanned, %d matched, %d acted so far",
                     "dry run of" if dry_run else action, status, topic, counts.scanned,
                     counts.matched, counts.acted)

    try:
        counts = broker.bulk(topic, action, status, error=flt.error, since=since,
                             until=until, stat=flt.stat, dry_run=dry_run, step=step,
                             progress=progress, cursor=cursor or None, max_steps=max_steps)
    except ValueError as exc:  # max_steps, or the cursor: checked before any step
        raise ParamError(f"invalid: {exc}") from None
    if not dry_run:
        audit_log.warning("bulk %s %s by %s: filter %s -> matched %d, acted %d "
                          "(%d scanned in %d steps); run %s part %d%s", action, topic, who,
                          json.dumps(flt.to_dict(), sort_keys=True), counts.matched,
                          counts.acted, counts.scanned, counts.steps, counts.run,
                          counts.part, ", done" if counts.done else ", more to come")
    answer: dict[str, Any] = {"topic": topic, "action": action, "dry_run": dry_run,
                              "filter": flt.to_dict(), **counts.to_dict()}
    if parts:
        answer.update(run=counts.run, part=counts.part, cursor=counts.cursor,
                      done=counts.done)
    return answer


# -- limits -------------------------------------------------------------------------------

def topic_limits(broker: Broker, topic: str) -> dict[str, Any]:
    """``topic``'s limits with its running count, this window's claims and how many
    claims a limit held back."""
    check_topic_name(topic)
    return {"topic": topic, **broker.limits(topic).to_dict()}


def set_topic_limits(broker: Broker, topic: str, max_running: int | None,
                     rate: int | None, rate_window: float | None,
                     who: str, group_max_running: int | None = None,
                     group_limits: dict[str, Any] | None = None) -> dict[str, Any]:
    """Replace ``topic``'s limits (None: that limit off; none at all clears them),
    audited with ``who`` and the limits before and after."""
    check_topic_name(topic)
    try:
        check_limits(max_running, rate, rate_window)
        check_group_limits(group_max_running, group_limits)
    except ValueError as exc:
        raise ParamError(f"invalid: limits ({exc})") from None
    before = broker.limits(topic)
    after = broker.set_limits(topic, max_running, rate, rate_window, set_by=who,
                              group_max_running=group_max_running,
                              group_limits=group_limits)
    audit_log.warning("topic_limits %s by %s: max_running %s -> %s, rate %s/%ss -> %s/%ss, "
                      "group_max_running %s -> %s, group_limits %s -> %s",
                      topic, who, before.max_running, after.max_running, before.rate,
                      before.rate_window, after.rate, after.rate_window,
                      before.group_max_running, after.group_max_running,
                      before.group_limits, after.group_limits)
    return {"topic": topic, **after.to_dict()}


def check_topic_name(topic: str) -> str:
    """Admin actions accept any name the protocol accepts (even a forced odd one)."""
    try:
        return check_topic(topic)
    except ValueError as exc:
        raise Refusal(ERR_BAD_TOPIC, str(exc)) from None


# -- listings ------------------------------------------------------------------------------

def topics_page(broker: Broker, page_index: int, page_size: int) -> dict[str, Any]:
    """Known topics with their depth per status and their live consumer count."""
    offset, limit = check_page(page_index, page_size)
    names = broker.topics()
    consumers = Counter(t for w in broker.workers() if w.get("alive")
                        for t in w.get("topics", ()))
    rows = [{"topic": name, **broker.counts(name), "consumers": consumers[name]}
            for name in names[offset:offset + limit]]
    return {"total": len(names), "list": rows}


def msgs_page(broker: Broker, topic: str, status: str, page_index: int, page_size: int,
              order: str) -> dict[str, Any]:
    """One page of ``topic``'s messages in ``status``, newest or oldest first."""
    check_page(page_index, page_size)
    check_topic_name(topic)
    check_status(status)
    if order not in ORDERS:
        raise ParamError(f"invalid: order (expected {' or '.join(ORDERS)})")
    total, msgs = broker.list(topic, status, page_index, page_size,
                              newest_first=ORDERS[order])
    return {"total": total, "list": [m.to_dict() for m in msgs]}


def workers_page(broker: Broker, page_index: int, page_size: int) -> dict[str, Any]:
    """Registered consumers (id, topics, info, ttl, last_seen, alive), by id."""
    offset, limit = check_page(page_index, page_size)
    rows = broker.workers()
    return {"total": len(rows), "list": rows[offset:offset + limit]}
