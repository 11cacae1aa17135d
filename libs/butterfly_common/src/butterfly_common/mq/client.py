"""The Python client: the process's one Broker, publish, look up, wait, check a topic.

Uses the process's Redis client (``BUTTERFLY_REDIS_URL``), so it works the same from a
handler, a script or the ``butterfly publish`` command::

    from butterfly_common import mq

    msg_id = mq.publish("/demo_api/hello", {"str_info": "hi"}).msg_id
    message = mq.wait(msg_id, timeout=10)
    message.status, message.result   # "finished", {"stat": "OK", "str_info": "hi"}

Every service gets its broker from :func:`broker` and waits with :func:`wait`: there is
one connection pool and one poll loop per process, whoever asks.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from .. import middleware, runtime
from ..logs import current_reqid
from ..polling import poll_until
from ..reqid import NO_REQID
from .broker import Broker
from .brokerlike import BrokerLike
from .keys import valid_topic
from .message import FAILED, FINISHED, Message, PublishResult

__all__ = ["broker", "get", "get_many", "publish", "publish_batch", "publish_many", "stand_in",
           "valid_topic", "wait"]

_lock = threading.Lock()
_broker: Broker | None = None
#: What publish/get/get_many/wait use instead of :func:`broker` (tests: a StubBroker).
_stand_in: BrokerLike | None = None

#: :func:`wait` polls after 10 ms first (a fast handler is done by then), then backs off
#: by half again each time up to 200 ms: a slow message costs ~5 reads a second per waiter
#: (Twemproxy offers neither blocking pops nor pub/sub to wait on).
WAIT_FIRST_PAUSE = 0.01
WAIT_MAX_PAUSE = 0.2
WAIT_GROWTH = 1.5


def broker() -> Broker:
    """The process-wide Broker over ``runtime.get_redis()``, with ``BUTTERFLY_MQ_LEASE``.

    Rebuilt when the runtime's client changes (tests configure new settings), so callers
    never hold a broker of an old Redis.
    """
    global _broker
    client = runtime.get_redis()
    current = _broker
    if current is None or current.client is not client:
        with _lock:
            if _broker is None or _broker.client is not client:
                _broker = Broker(client, lease=runtime.get_settings().mq_lease)
            current = _broker
    return current


@contextmanager
def stand_in(replacement: BrokerLike) -> Iterator[BrokerLike]:
    """Within the block, :func:`publish`, :func:`get`, :func:`get_many` and :func:`wait`
    use ``replacement`` instead of the Redis broker: a handler under test that publishes
    (a next step, a notice) publishes to the test's
    :class:`~butterfly_common.testing.stub_broker.StubBroker`. :func:`broker` (the
    administration a service does on Redis) is unchanged."""
    global _stand_in
    previous, _stand_in = _stand_in, replacement
    try:
        yield replacement
    finally:
        _stand_in = previous


def _source() -> BrokerLike:
    return _stand_in if _stand_in is not None else broker()


def publish(topic: str, data: dict[str, Any], *, via: BrokerLike | None = None,
            **options: Any) -> PublishResult:
    """Queue ``data`` on ``topic``; options as :meth:`Broker.publish` (msg_id, delay, ...).

    The process's middleware see it (``before_publish`` may change ``options``).
    ``via``: the broker to publish with (default: :func:`broker`, or the test's stand-in).

    The current request's id (when called from a handler) travels with the message unless
    ``reqid`` is given, so one id follows the work across services.
    """
    if "reqid" not in options:
        rid = current_reqid.get()
        options["reqid"] = None if rid == NO_REQID else rid
    chain = middleware.active()
    for mw in chain.before_publish:
        mw.before_publish(topic, data, options)
    try:
        result = (via or _source()).publish(topic, data, **options)
    except Exception:
        chain.notify("after_publish", topic, data, None)  # None: it failed (and raises)
        raise
    chain.notify("after_publish", topic, data, result)
    return result


def publish_batch(messages: Sequence[dict[str, Any]], *, on_success: str | None = None,
                  on_complete: str | None = None, batch_id: str | None = None,
                  data: dict[str, Any] | None = None,
                  **options: Any) -> tuple[str, list[PublishResult]]:
    """Publish ``messages`` as one batch on the process's broker (see
    :meth:`Broker.publish_batch` and ``batch.py``): ``on_success`` / ``on_complete``
    are each published to exactly once. The current request's id travels with the
    messages unless ``reqid`` is given. The publish middleware (tracing) do not see the
    batch's messages one by one. Returns the batch id and the per-item results."""
    if "reqid" not in options:
        rid = current_reqid.get()
        options["reqid"] = None if rid == NO_REQID else rid
    return broker().publish_batch(messages, on_success=on_success, on_complete=on_complete,
                                  batch_id=batch_id, data=data, **options)


def publish_many(messages: Sequence[dict[str, Any]], *, via: BrokerLike | None = None,
                 **options: Any) -> list[PublishResult]:
    """Queue several messages in pipelined round trips; items and options as
    :meth:`Broker.publish_many` (each item a dict with ``topic``, ``data`` and any
    per-message option). The current request's id travels with them unless ``reqid``
    is given (as an option or per item). ``via`` as for :func:`publish`."""
    if "reqid" not in options:
        rid = current_reqid.get()
        options["reqid"] = None if rid == NO_REQID else rid
    chain = middleware.active()
    target = via or _source()
    if not (chain.before_publish or chain.after_publish):
        return target.publish_many(messages, **options)
    # the middleware see each message as they see a publish: its options, then its result
    shared = {k: options.pop(k) for k in _FOR_ALL if k in options}
    items: list[Any] = []
    seen: list[dict[str, Any]] = []  # the messages whose before_publish hooks ran
    try:
        for item in messages:
            if not isinstance(item, dict) or "topic" not in item or "data" not in item:
                items.append(item)  # the broker says what is wrong with it
                continue
            opts = {**options, **{k: v for k, v in item.items() if k not in ("topic", "data")}}
            seen.append(item)
            for mw in chain.before_publish:
                mw.before_publish(item["topic"], item["data"], opts)
            items.append({"topic": item["topic"], "data": item["data"], **opts})
        results = target.publish_many(items, **shared)
    except Exception:
        for item in reversed(seen):  # hooks that stacked a state per message unwind
            chain.notify("after_publish", item["topic"], item["data"], None)
        raise
    for item, result in reversed(list(zip(seen, results, strict=True))):
        chain.notify("after_publish", item["topic"], item["data"], result)
    return results


#: :meth:`Broker.publish_many` options that apply to the whole call, not to one message.
_FOR_ALL = ("force", "chunk")


def get(msg_id: str, topic: str | None = None) -> Message | None:
    """The message with ``msg_id`` (by id alone unless ``topic`` is given), or None when
    unknown or expired."""
    return _source().get(msg_id, topic)


def get_many(msg_ids: Sequence[str]) -> list[Message | None]:
    """The messages of ``msg_ids`` in order (None where unknown), in as few round trips as
    the broker offers (one per shard when it has ``get_many``)."""
    current = _source()
    many = getattr(current, "get_many", None)
    if many is not None:
        return list(many(list(msg_ids)))
    return [current.get(msg_id) for msg_id in msg_ids]


def wait(msg_id: str, timeout: float = 10.0, *, topic: str | None = None,
         via: BrokerLike | None = None) -> Message | None:
    """Poll until the message is finished or failed, or ``timeout`` seconds pass.

    Returns the message as last seen (check ``status``: not terminal means the time ran
    out), or None when it is unknown (never published, deleted, expired) - also when it
    disappears mid-wait. ``via``: the broker to read (default: :func:`broker`).
    """
    source = via or _source()
    where = [topic]

    def read() -> Message | None:
        message = source.get(msg_id, where[0])
        if message is not None:
            where[0] = message.topic  # later reads skip the id index
        return message

    return poll_until(read, lambda m: m is None or m.status in (FINISHED, FAILED), timeout,
                      first=WAIT_FIRST_PAUSE, growth=WAIT_GROWTH, cap=WAIT_MAX_PAUSE)
