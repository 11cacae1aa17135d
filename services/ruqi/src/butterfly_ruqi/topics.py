"""ruqi's topic commands on the framework's queue client (``butterfly_common.mq``).

The topic check, the broker and the result lookup are the framework's; this module only
adds what a scheduled fire needs: a message id derived from the fire, so a fire run twice
publishes one message.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from butterfly_common import mq
from butterfly_common.mq import valid_topic
from butterfly_common.mq.client import WAIT_MAX_PAUSE
from butterfly_common.mq.message import DELAYED, FAILED, FINISHED, QUEUED
from butterfly_common.polling import poll_until

__all__ = ["cancel", "publish", "result", "valid_topic", "wait"]


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


def wait(msg_id: str, timeout: float, stop: Callable[[], bool] | None = None,
         ) -> tuple[str, dict[str, Any] | None] | None:
    """``(status, result)`` once the message is finished or failed, or as last seen when
    ``timeout`` runs out (``mq.wait``, the framework's one poll loop); None if unknown.
    ``stop``: give up as soon as it says so (checked at each poll, at most 0.2 s apart)."""
    if stop is None:
        message = mq.wait(msg_id, timeout)
    else:
        message = poll_until(lambda: mq.get(msg_id),
                             lambda m: stop() or m is None or m.status in (FINISHED, FAILED),
                             timeout, cap=WAIT_MAX_PAUSE)
    if message is None:
        return None
    return message.status, message.result


def cancel(msg_id: str) -> str:
    """Cancel a fire's message through the broker: deleted while no worker took it
    (queued or delayed); a started or ended one is left alone. What happened, for the
    history row. (Between the status read and the delete a worker may claim it: it then
    finds its message gone, and its result is not stored.)"""
    message = mq.get(msg_id)
    if message is None:
        return "message gone (expired or deleted)"
    if message.status in (QUEUED, DELAYED):
        if mq.broker().delete(message.topic, msg_id):
            return f"message deleted from the queue (was {message.status})"
        return "message gone (expired or deleted)"
    return f"message could not be stopped: already {message.status} on a worker"
