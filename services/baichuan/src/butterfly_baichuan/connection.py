"""One :class:`Broker` per process, over the process's shared Redis client.

Handlers never build clients: the broker wraps ``runtime.get_redis()`` so every request
of a worker process shares one connection pool. When the runtime is reconfigured (tests
build apps with new settings), the client changes and the broker is rebuilt with it.
"""

from __future__ import annotations

import threading

from butterfly_common import runtime
from butterfly_common.mq import Broker

_lock = threading.Lock()
_broker: Broker | None = None


def get_broker() -> Broker:
    """The process's broker on the current ``BUTTERFLY_REDIS_URL`` client."""
    global _broker
    client = runtime.get_redis()
    broker = _broker
    if broker is None or broker.client is not client:
        with _lock:
            if _broker is None or _broker.client is not client:
                _broker = Broker(client)
            broker = _broker
    return broker
