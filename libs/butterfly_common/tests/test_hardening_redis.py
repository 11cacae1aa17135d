"""Issue 12, defect 6 at the client level: a frozen Redis fails calls fast (no thread
waits out the timeout more than once per stall) and the client resumes by itself."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time

import pytest
from redis.exceptions import RedisError

from butterfly_common.redis_client import make_redis, pipeline
from butterfly_common.settings import load_settings
from butterfly_common.testing import RedisServer, wait_until


def test_defect_06_frozen_redis_fails_fast_and_resumes():
    with RedisServer() as server:
        client = make_redis(server.url, socket_timeout=1.0)
        client.ping()
        costs: list[float] = []

        def call(i: int) -> None:
            started = time.monotonic()
            with contextlib.suppress(RedisError):
                client.set(f"k{i}", i)
            costs.append(time.monotonic() - started)

        os.kill(server.proc.pid, signal.SIGSTOP)
        try:
            threads = [threading.Thread(target=call, args=(i,)) for i in range(16)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(10)
            # the stall watchdog (timeout / 2) frees every waiting thread together
            assert len(costs) == 16 and max(costs) < 0.9, costs
            started = time.monotonic()
            try:
                client.get("k0")
            except RedisError as exc:
                assert "not answering" in str(exc)
            assert time.monotonic() - started < 0.2  # open: fails without waiting
        finally:
            os.kill(server.proc.pid, signal.SIGCONT)
        assert wait_until(lambda: client.ping(), 5, what="resumed after SIGCONT")


def test_frozen_redis_fails_a_pipeline_fast_too():
    """RawPipeline reads its replies as one watched wait (read_replies): a frozen server
    still frees the reader at the stall watchdog, not at the socket timeout."""
    with RedisServer() as server:
        client = make_redis(server.url, socket_timeout=2.0)
        pipe = pipeline(client)
        pipe.set("a", 1).set("b", 2)
        assert pipe.execute() == ["OK", "OK"]
        os.kill(server.proc.pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            pipe.set("a", 3).set("b", 4)
            with pytest.raises(RedisError):
                pipe.execute()
            assert time.monotonic() - started < 1.8
        finally:
            os.kill(server.proc.pid, signal.SIGCONT)
        assert wait_until(lambda: client.mget("a", "b") is not None, 5, what="resumed")


def test_defect_06_redis_timeouts_are_settings():
    settings = load_settings({})
    assert (settings.redis_timeout, settings.redis_retries) == (1.0, 1)
    tuned = load_settings({"BUTTERFLY_REDIS_TIMEOUT": "2.5", "BUTTERFLY_REDIS_RETRIES": "0"})
    assert (tuned.redis_timeout, tuned.redis_retries) == (2.5, 0)
