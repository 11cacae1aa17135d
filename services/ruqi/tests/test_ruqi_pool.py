"""RunPool: every call runs once, up to ``workers`` at a time; shutdown drops or waits."""

from __future__ import annotations

import threading
import time

import pytest

from butterfly_common.testing import wait_until
from butterfly_ruqi.pool import RunPool


def test_every_call_runs_once_on_at_most_workers_threads():
    pool = RunPool(4, "t")
    lock = threading.Lock()
    seen: list[int] = []
    running = [0, 0]  # now, most at once

    def call(i: int) -> None:
        with lock:
            running[0] += 1
            running[1] = max(running[1], running[0])
        time.sleep(0.002)
        with lock:
            running[0] -= 1
            seen.append(i)

    for i in range(0, 300, 30):
        pool.submit_many([(call, (j,)) for j in range(i, i + 29)])
        pool.submit(call, i + 29)
    wait_until(lambda: len(seen) == 300, 20, what="every call ran")
    pool.shutdown(wait=True)
    assert sorted(seen) == list(range(300))
    assert 1 < running[1] <= 4
    assert len(pool._threads) <= 4


def test_a_failing_call_does_not_stop_its_worker():
    pool = RunPool(1, "t")
    done = threading.Event()
    pool.submit(lambda: 1 / 0)
    pool.submit(done.set)
    assert done.wait(5)
    pool.shutdown()


def test_shutdown_drops_queued_calls_and_refuses_new_ones():
    pool = RunPool(1, "t")
    gate, started = threading.Event(), threading.Event()
    ran: list[int] = []

    def block() -> None:
        started.set()
        gate.wait(10)
        ran.append(0)

    pool.submit(block)
    assert started.wait(5)
    pool.submit(ran.append, 1)
    threading.Timer(0.2, gate.set).start()
    pool.shutdown(wait=True, cancel_futures=True)
    assert ran == [0]
    with pytest.raises(RuntimeError):
        pool.submit(ran.append, 2)
    assert not any(t.is_alive() for t in pool._threads)


def test_shutdown_without_cancel_runs_what_was_queued():
    pool = RunPool(2, "t")
    ran: list[int] = []
    pool.submit_many([(time.sleep, (0.01,))] * 4 + [(ran.append, (1,))])
    pool.shutdown(wait=True)
    assert ran == [1]
