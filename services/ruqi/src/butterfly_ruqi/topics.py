"""The one place ruqi talks to the baichuan queue (``butterfly_common.mq``).

Kept tiny on purpose: if the queue's client API moves, only this file changes.
The queue module is imported lazily so the scheduler still runs HTTP and script jobs in a
build without it.
"""

from __future__ import annotations

import re
from typing import Any

from butterfly_common.runtime import get_redis

_TOPIC = re.compile(r"^/[A-Za-z_][A-Za-z0-9_]*/[A-Za-z_][A-Za-z0-9_]*/?$")


def valid_topic(topic: str) -> bool:
    """True for ``/app/handler`` (what every JSON handler is published as)."""
    return bool(_TOPIC.match(topic))


def _broker() -> Any:
    from butterfly_common.mq import Broker

    return Broker(get_redis())


def publish(topic: str, body: dict[str, Any], *, reqid: str, msg_id: str,
            timeout: float) -> str:
    """Publish ``body`` to ``topic`` and return the msg id.

    ``msg_id`` is derived from (job, scheduled time), so a fire that is ever run twice
    (see engine.py on crash recovery) publishes one message, not two.
    """
    result = _broker().publish(topic.rstrip("/"), body, reqid=reqid, msg_id=msg_id,
                               timeout=timeout)
    return str(result.msg_id)


def result(msg_id: str) -> tuple[str, dict[str, Any] | None] | None:
    """``(status, result)`` of a published message, or None if it is unknown."""
    message = _broker().get(msg_id)
    if message is None:
        return None
    return message.status, message.result
