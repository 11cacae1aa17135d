"""Periodic: the one background loop (interval, prompt stop, one owner by lease, outage
logging, /readyz detail and metrics), on a real redis-server."""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from prometheus_client import REGISTRY

from butterfly_common import periodic
from butterfly_common.coordination import Lease
from butterfly_common.periodic import ALIGN_SLACK, Periodic
from butterfly_common.redis_client import make_redis
from butterfly_common.serve import stop_background
from butterfly_common.testing import wait_until


@pytest.fixture
def redis(redis_server) -> Iterator[Any]:
    client = make_redis(redis_server.url)
    yield client
    client.close()


@pytest.fixture
def loops() -> Iterator[Callable[..., Periodic]]:
    """``loops(name, interval, fn, **options)``: a started Periodic, stopped after the test."""
    made: list[Periodic] = []

    def make(name: str, interval: float, fn: Callable[[], object], **options: Any) -> Periodic:
        loop = Periodic(f"{name}-{uuid.uuid4().hex[:6]}", interval, fn, **options)
        made.append(loop)
        return loop.start()

    yield make
    for loop in made:
        loop.stop(5)


class Calls:
    """Counts calls of a loop's fn (with their times); ``fail`` makes it raise."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.fail: Exception | None = None

    def __call__(self) -> None:
        self.times.append(time.monotonic())
        if self.fail is not None:
            raise self.fail

    def __len__(self) -> int:
        return len(self.times)


def lease_key() -> str:
    return f"t:periodic:{uuid.uuid4().hex[:8]}"


def test_runs_every_interval_and_counts_the_pause_from_the_end_of_a_run(loops):
    calls = Calls()
    loop = loops("every", 0.05, calls, first_delay=0)
    wait_until(lambda: len(calls) >= 6, 5, what="six runs")
    gaps = [b - a for a, b in zip(calls.times, calls.times[1:], strict=False)]
    assert min(gaps) >= 0.045, gaps  # an Event wait of the interval between runs
    assert loop.runs >= 6 and loop.last_success is not None and loop.failures == 0


def test_first_delay_and_wake(loops):
    calls = Calls()
    started = time.monotonic()
    loop = loops("wake", 60, calls)  # default first delay: one interval
    time.sleep(0.2)  # the loop must NOT run within this time
    assert len(calls) == 0
    loop.wake()
    wait_until(lambda: len(calls) == 1, 2, what="woken run")
    assert calls.times[0] - started < 2


def test_jitter_spreads_the_pauses(loops):
    calls = Calls()
    loops("jitter", 0.04, calls, first_delay=0, jitter=0.5)
    wait_until(lambda: len(calls) >= 12, 10, what="twelve runs")
    gaps = [b - a for a, b in zip(calls.times, calls.times[1:], strict=False)]
    assert min(gaps) >= 0.019, gaps  # never below interval * (1 - jitter)
    assert max(gaps) - min(gaps) > 0.005, gaps  # not one fixed pause


def test_paced_fn_sets_its_own_pause_capped_at_the_interval(loops):
    """``paced``: each run returns the pause before the next one (a loop that sleeps
    until its next due item); a longer one is cut to ``interval``."""
    calls = Calls()
    asked = iter([0.3, 0.02, 5.0])

    def fn() -> float:
        calls()
        return next(asked, 60.0)

    loops("paced", 0.5, fn, paced=True, first_delay=0)
    wait_until(lambda: len(calls) >= 4, 5, what="four paced runs")
    gaps = [b - a for a, b in zip(calls.times, calls.times[1:], strict=False)]
    assert gaps[0] >= 0.29 and gaps[1] < 0.4 and 0.49 <= gaps[2] < 3, gaps


def test_align_ticks_on_the_wall_clock(loops):
    stamps: list[float] = []
    loops("align", 0.2, lambda: stamps.append(time.time()), align=True)
    wait_until(lambda: len(stamps) >= 3, 5, what="three aligned runs")
    ticks = [int(t // 0.2) for t in stamps]
    assert len(set(ticks)) == len(ticks), stamps  # one run per tick
    assert all(t % 0.2 >= ALIGN_SLACK - 0.02 for t in stamps), stamps  # just past the tick


def test_stop_is_prompt_idempotent_and_final(loops):
    calls = Calls()
    loop = loops("stop", 3600, calls, first_delay=0)
    wait_until(lambda: len(calls) == 1, 2, what="first run")
    started = time.monotonic()
    loop.stop(timeout=5)
    assert time.monotonic() - started < 0.5  # an Event wait, not an hour's sleep
    assert not loop.alive() and loop.stopped
    loop.stop(timeout=5)  # again: nothing happens
    loop.wake()
    time.sleep(0.1)
    assert len(calls) == 1
    assert loop not in periodic.running()
    with pytest.raises(RuntimeError, match="stopped"):
        loop.start()


def test_stop_from_inside_fn_ends_the_loop():
    calls = Calls()

    def fn() -> None:
        calls()
        loop.stop()

    loop = Periodic("self-stop", 0.01, fn, first_delay=0)
    try:
        loop.start()
        wait_until(lambda: not loop.alive(), 2, what="the loop to end")
        assert len(calls) == 1 and loop.failures == 0
        assert loop not in periodic.running()
    finally:
        loop.stop()


def test_one_owner_among_loops_sharing_a_lease_and_takeover_on_stop(redis, loops):
    key = lease_key()
    a_calls, b_calls = Calls(), Calls()
    a = loops("lease-a", 0.05, a_calls, first_delay=0, lease=Lease(redis, key, 1.0))
    wait_until(lambda: len(a_calls) >= 1, 2, what="a takes the lease")
    b = loops("lease-b", 0.05, b_calls, first_delay=0, lease=Lease(redis, key, 1.0))
    wait_until(lambda: len(a_calls) >= 10, 5, what="a runs on")
    assert len(b_calls) == 0  # b ticked too, but never ran: a holds the lease
    assert a.holds_lease is True and b.holds_lease is False
    holder = Lease(redis, key, 1.0).holder()
    assert holder is not None and holder[0] == a.holder
    a.stop()  # releases the lease: b takes over at its next tick, not after the TTL
    after = Lease(redis, key, 1.0).holder()
    assert after is None or after[0] == b.holder
    wait_until(lambda: len(b_calls) >= 1, 5, what="b takes over")
    assert b.holds_lease is True and a.holds_lease is False
    ran_a = len(a_calls)
    wait_until(lambda: len(b_calls) >= 5, 5, what="b runs on")
    assert len(a_calls) == ran_a


def test_a_lost_lease_stops_the_runs_until_it_is_won_back(redis, loops, caplog):
    key = lease_key()
    calls = Calls()
    caplog.set_level(logging.INFO, logger="butterfly.periodic")
    loop = loops("lost", 0.03, calls, first_delay=0, lease=Lease(redis, key, 1.0))
    wait_until(lambda: len(calls) >= 2, 2, what="runs while holding")
    sec, usec = redis.time()
    redis.hset(key, mapping={"h": "intruder", "e": sec * 1000 + usec // 1000 + 60_000})
    wait_until(lambda: loop.holds_lease is False, 2, what="the loss noticed")
    stopped_at = len(calls)
    time.sleep(0.3)  # ten ticks: none may run
    assert len(calls) == stopped_at
    redis.hset(key, mapping={"h": "", "e": 0})  # the intruder lets go
    wait_until(lambda: len(calls) > stopped_at, 2, what="runs again once won back")
    assert loop.holds_lease is True
    messages = [r.getMessage() for r in caplog.records if r.name == "butterfly.periodic"]
    assert sum("lost to another process" in m for m in messages) == 1
    assert sum("runs it now" in m for m in messages) == 2


def test_lease_ttl_must_outlast_a_pause(redis):
    with pytest.raises(ValueError, match="lease TTL"):
        Periodic("short-lease", 1.0, lambda: None, lease=Lease(redis, lease_key(), 1.0))
    with pytest.raises(ValueError, match="interval"):
        Periodic("no-interval", 0, lambda: None)


def test_an_outage_is_logged_once_and_its_recovery_once(loops, caplog):
    calls = Calls()
    calls.fail = ConnectionError("redis down")
    caplog.set_level(logging.INFO)
    logger = logging.getLogger(f"test.periodic.{uuid.uuid4().hex[:6]}")
    loop = loops("outage", 0.01, calls, first_delay=0, logger=logger)
    for outage in (1, 2):
        start = len(calls)
        wait_until(lambda s=start: len(calls) >= s + 10, 5, what="ten failing runs")
        assert loop.consecutive_failures >= 10 and "redis down" in loop.last_error
        calls.fail = None
        wait_until(lambda: loop.consecutive_failures == 0 and len(calls) >= 3, 5,
                   what="recovery")
        ok_from = len(calls)
        wait_until(lambda s=ok_from: len(calls) >= s + 5, 5, what="five good runs")
        records = [r for r in caplog.records if r.name == logger.name]
        failed = [r for r in records if r.getMessage().startswith(f"{loop.name} failed;")]
        recovered = [r for r in records if "works again" in r.getMessage()]
        assert len(failed) == outage and len(recovered) == outage, \
            [r.getMessage() for r in records]
        assert failed[-1].exc_info is not None  # the first failure carries its traceback
        assert "ConnectionError: redis down" in failed[-1].getMessage()
        assert all(r.exc_info is None for r in recovered)
        calls.fail = ConnectionError("redis down")
    assert loop.failures >= 20


def test_retry_pause_after_a_failure(loops):
    calls = Calls()
    calls.fail = RuntimeError("boom")
    loops("retry", 3600, calls, first_delay=0, retry=0.02)
    wait_until(lambda: len(calls) >= 5, 3, what="retries at the retry pause")


def test_readyz_detail_and_metrics_show_the_state(redis, loops, make_app):
    key = lease_key()
    calls = Calls()
    good = loops("ready-good", 0.02, calls, first_delay=0, lease=Lease(redis, key, 1.0))
    bad_calls = Calls()
    bad_calls.fail = OSError("disk full")
    bad = loops("ready-bad", 0.02, bad_calls, first_delay=0)
    wait_until(lambda: len(calls) >= 2 and bad.consecutive_failures >= 3, 5,
               what="both loops ran")
    client = make_app().test_client()
    plain = client.get("/readyz")
    assert plain.status_code == 200 and "loops" not in json.loads(plain.data)
    reply = client.get("/readyz?detail=1")
    assert reply.status_code == 200  # a failing loop never decides readiness
    body = json.loads(reply.data)
    assert body["stat"] == "OK" and body["redis"] == "ok"
    g, b = body["loops"][good.name], body["loops"][bad.name]
    assert g["running"] and g["holds_lease"] is True and g["consecutive_failures"] == 0
    assert g["last_success"] > time.time() - 60 and g["last_failure"] is None
    assert b["holds_lease"] is None and b["consecutive_failures"] >= 3
    assert b["last_success"] is None and b["last_failure"] > time.time() - 60
    assert b["last_error"] == "OSError: disk full"

    def sample(name: str, loop: Periodic) -> float | None:
        return REGISTRY.get_sample_value(name, {"loop": loop.name})

    assert sample("butterfly_periodic_last_success_timestamp", good) > time.time() - 60
    assert sample("butterfly_periodic_lease_held", good) == 1
    assert sample("butterfly_periodic_failures_total", good) == 0
    assert sample("butterfly_periodic_failures_total", bad) >= 3
    assert sample("butterfly_periodic_consecutive_failures", bad) >= 3
    assert sample("butterfly_periodic_last_failure_timestamp", bad) > time.time() - 60
    text = client.get("/metrics").data.decode()
    assert f'butterfly_periodic_failures_total{{loop="{bad.name}"}}' in text
    good.stop()
    assert sample("butterfly_periodic_lease_held", good) == 0
    assert good.name not in json.loads(client.get("/readyz?detail=1").data)["loops"]


def test_a_loop_whose_thread_died_makes_readyz_503(loops, make_app, caplog):
    class Fatal(BaseException):
        pass

    def fn() -> None:
        raise Fatal("the end")

    loop = loops("dies", 0.01, fn, first_delay=0)
    wait_until(lambda: not loop.alive(), 2, what="the thread to end")
    client = make_app().test_client()
    reply = client.get("/readyz")
    assert reply.status_code == 503
    assert json.loads(reply.data)["periodic"] == f"error: loop thread ended: {loop.name}"
    assert any("ended by Fatal" in r.getMessage() for r in caplog.records)
    loop.stop()  # a loop stopped on purpose is no problem
    assert client.get("/readyz").status_code == 200


def test_shutdown_stops_loops_and_releases_their_lease(redis):
    key = lease_key()
    ran = threading.Event()
    loop = Periodic("shutdown", 0.05, ran.set, first_delay=0,
                    lease=Lease(redis, key, 1.0)).start()
    wait_until(ran.is_set, 2, what="the first run")
    assert loop in periodic.running()
    stop_background([])  # what gunicorn's worker_exit runs
    assert not loop.alive() and loop not in periodic.running()
    assert Lease(redis, key, 1.0).holder() is None  # released, not left to expire
