"""Crash an in-process engine the way SIGKILL would, without any hook in the engine itself.

Nothing is cleaned up: the heartbeat stops, the engine's Redis goes away (so unstarted claims
stay ``c|victim``, running fires stay ``r|victim`` and nothing is marked done) and every
history row it had not stored yet is dropped.
"""

from __future__ import annotations

from typing import Any

from butterfly_common.redis_client import make_redis
from butterfly_common.testing import free_port
from butterfly_ruqi.engine import Engine


def crash(engine: Engine) -> None:
    engine._beat.stop(5)
    engine.claims.redis = make_redis(f"redis://127.0.0.1:{free_port()}/0")  # nobody listens
    writer = engine.writer

    def drop(record: Any) -> None:
        return None

    with writer._lock:
        writer.put = drop  # type: ignore[method-assign]
        writer._buf.clear()
    writer._loop.stop(5)
    for loop in (engine._fire, engine._control, engine._prune):
        loop.stop(5)
    engine._pool.shutdown(wait=False, cancel_futures=True)
