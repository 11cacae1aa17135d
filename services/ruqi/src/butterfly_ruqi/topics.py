"""ruqi's topic commands on the framework's queue client (``butterfly_common.mq``).

The topic check, the broker and the result lookup are the framework's; this module only
adds what a scheduled fire needs: a message id derived from the fire, so a fire run twice
publishes one message.
"""

from __future__ import annotations

from typing import Any

from butterfly_common import mq
from butterfly_common.mq import valid_topic

__all__ = ["publish", "result", "valid_topic", "wait"]


def publish(topic: str, body: dict[str, Any], *, reqid: str, msg_id: str,
            timeout: float) -> str:
    """Publish ``body`` to ``topic`` and return the msg id.

    ``msg_id`` is derived from (job, scheduled time), so a fire that is ever run twice
    (see engine.py on crash recovery) publishes one message, not two.
    """
    published = mq.publish(topic.rstrip("/"), body, reqid=reqid, msg_id=msg_id,
                           timeout=timeout)
    return str(published.msg_id)


def result(msg_id: str) -> tuple[str, dict[str, Any] | None] | None:
    """``(status, result)`` of a published message, or None if it is unknown."""
    message = mq.get(msg_id)
    if message is None:
        return None
    return message.status, message.result


def wait(msg_id: str, timeout: float) -> tuple[str, dict[str, Any] | None] | None:
    """``(status, result)`` once the message is finished or failed, or as last seen when
    ``timeout`` runs out (``mq.wait``, the framework's one poll loop); None if unknown."""
    message = mq.wait(msg_id, timeout)
    if message is None:
        return None
    return message.status, message.result
