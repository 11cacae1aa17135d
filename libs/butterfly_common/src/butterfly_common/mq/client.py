"""The Python client: publish to a topic, look a message up, wait for its result.

Uses the process's Redis client (``BUTTERFLY_REDIS_URL``), so it works the same from a
handler, a script or the ``butterfly publish`` command::

    from butterfly_common import mq

    msg_id = mq.publish("/demo_api/hello", {"str_info": "hi"}).msg_id
    message = mq.wait(msg_id, timeout=10)
    message.status, message.result   # "finished", {"stat": "OK", "str_info": "hi"}
"""

from __future__ import annotations

import time
from typing import Any

from .broker import Broker
from .message import FAILED, FINISHED, Message, PublishResult

_broker: Broker | None = None


def broker() -> Broker:
    """The process-wide Broker over ``runtime.get_redis()`` (rebuilt if that changes)."""
    global _broker
    from .. import runtime

    client = runtime.get_redis()
    if _broker is None or _broker.client is not client:
        _broker = Broker(client)
    return _broker


def publish(topic: str, data: dict[str, Any], **options: Any) -> PublishResult:
    """Queue ``data`` on ``topic``; options as :meth:`Broker.publish` (msg_id, delay, ...).

    The current request's id (when called from a handler) travels with the message unless
    ``reqid`` is given, so one id follows the work across services.
    """
    if "reqid" not in options:
        from ..logs import current_reqid

        rid = current_reqid.get()
        options["reqid"] = None if rid == "X" * 16 else rid
    return broker().publish(topic, data, **options)


def get(msg_id: str) -> Message | None:
    """The message with ``msg_id`` (any topic), or None when unknown or expired."""
    return broker().get(msg_id)


def wait(msg_id: str, timeout: float = 10.0) -> Message | None:
    """Poll until the message is finished or failed, or ``timeout`` seconds pass.

    Returns the message as last seen (check ``status``), or None when it is unknown.
    Polls every 10 ms at first, backing off to 200 ms.
    """
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        message = get(msg_id)
        if message is None or message.status in (FINISHED, FAILED):
            return message
        if time.monotonic() >= deadline:
            return message
        time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
        delay = min(0.2, delay * 2)
