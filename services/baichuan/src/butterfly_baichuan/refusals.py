"""Why baichuan says no: one stat per refusal and its HTTP code.

Domain code raises the framework's :class:`~butterfly_common.Refusal` (or lets a
queue-protocol / Redis exception through); the service's :class:`QueueRefusals`
middleware names the refusal such an exception stands for, and the Gateway
answers ``{"stat": ...}`` with the reason in ``x-reason`` and the code of
:data:`HTTP_CODES`. So every refusal has a specific, stable stat for programs and a
sentence for people, and a Redis outage is a 503 ``ERR_MQ_UNAVAILABLE`` instead of a 500
with a traceback.
"""

from __future__ import annotations

import logging

from redis.exceptions import RedisError

from butterfly_common import Refusal, retstat
from butterfly_common.discovery import Route
from butterfly_common.middleware import Middleware
from butterfly_common.mq import InvalidTopic, MessageIdConflict, MQError, NoConsumer
from butterfly_common.request import Request

log = logging.getLogger(__name__)

ERR_BAD_TOPIC = "ERR_BAD_TOPIC"
ERR_NO_CONSUMER = "ERR_NO_CONSUMER"
ERR_MSG_NOT_FOUND = "ERR_MSG_NOT_FOUND"
ERR_MSG_TOO_LARGE = "ERR_MSG_TOO_LARGE"
ERR_MSG_ID_CONFLICT = "ERR_MSG_ID_CONFLICT"
ERR_MSG_ID_RESERVED = "ERR_MSG_ID_RESERVED"
ERR_MSG_NOT_FAILED = "ERR_MSG_NOT_FAILED"
ERR_BAD_STATUS = "ERR_BAD_STATUS"
ERR_MQ_UNAVAILABLE = "ERR_MQ_UNAVAILABLE"
ERR_WAIT_TIMEOUT = "ERR_WAIT_TIMEOUT"
ERR_TOO_MANY_WAITS = "ERR_TOO_MANY_WAITS"
ERR_BATCH_NOT_FOUND = "ERR_BATCH_NOT_FOUND"

#: HTTP code of each stat (the Service's ``statuses``). Clients should branch on the
#: stat; the code is for proxies, dashboards and ``curl --fail``. ``ERR_WAIT_TIMEOUT`` is
#: 200 on purpose: the wait worked, the message just is not done yet (poll again).
HTTP_CODES: dict[str, int] = {
    ERR_BAD_TOPIC: retstat.HTTP_BAD_PARAM,
    ERR_BAD_STATUS: retstat.HTTP_BAD_PARAM,
    ERR_MSG_NOT_FOUND: retstat.HTTP_NOT_FOUND,
    ERR_BATCH_NOT_FOUND: retstat.HTTP_NOT_FOUND,
    ERR_NO_CONSUMER: 409,
    ERR_MSG_ID_CONFLICT: 409,
    ERR_MSG_ID_RESERVED: retstat.HTTP_FORBIDDEN,
    ERR_MSG_NOT_FAILED: 409,
    ERR_MSG_TOO_LARGE: retstat.HTTP_TOO_LARGE,
    ERR_MQ_UNAVAILABLE: retstat.HTTP_UNAVAILABLE,
    ERR_WAIT_TIMEOUT: retstat.HTTP_OK,
    ERR_TOO_MANY_WAITS: 429,
    retstat.ERR_UNAUTHORIZED: retstat.HTTP_UNAUTHORIZED,
    retstat.ERR_FORBIDDEN: retstat.HTTP_FORBIDDEN,
}


class QueueRefusals(Middleware):
    """A queue-protocol or Redis exception a handler let through -> its refusal."""

    def on_exception(self, req: Request, route: Route, exc: Exception) -> Refusal | None:
        return refusal_of(exc)


def refusal_of(exc: Exception) -> Refusal | None:
    """The refusal a queue-protocol or Redis exception stands for (None: a real bug)."""
    if isinstance(exc, Refusal):
        return exc
    if isinstance(exc, InvalidTopic):
        return Refusal(ERR_BAD_TOPIC, str(exc))
    if isinstance(exc, NoConsumer):
        return Refusal(ERR_NO_CONSUMER, f"{exc}; start a consumer or publish with force=true")
    if isinstance(exc, MessageIdConflict):
        return Refusal(ERR_MSG_ID_CONFLICT, str(exc))
    if isinstance(exc, RedisError | MQError):
        # Any Redis error here means the store (or the proxy in front of it) could not do
        # the step: connection refused, timeout, a shard down behind Twemproxy, cluster
        # down. The caller may retry; nothing half-done is acknowledged.
        log.warning("queue store error: %s: %s", type(exc).__name__, exc)
        return Refusal(ERR_MQ_UNAVAILABLE,
                       f"queue store unavailable: {type(exc).__name__}: {exc}"[:300])
    return None
