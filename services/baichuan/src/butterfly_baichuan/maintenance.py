"""Background upkeep of the queue, one daemon thread per server process.

Each pass (every ``BAICHUAN_MAINTENANCE_INTERVAL`` s, jittered so the processes of a
fleet do not fire together):

- ``reap`` every known topic: leases that ran out go back to the queue, expired
  finished / failed records are trimmed. Consumers reap the topics they serve; this also
  covers topics whose consumers are all gone, so their registries do not grow forever.
- prune workers silent for ``BAICHUAN_PRUNE_WORKERS_AFTER`` s.
- set the gauge ``butterfly_queue_messages{topic,status}``.

Every step is atomic and idempotent in the protocol, so any number of baichuan
processes may run it at once. Under ``butterfly serve`` prometheus_client runs in
multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``): every process writes its own copy of
the gauge, and ``multiprocess_mode="livemostrecent"`` makes ``/metrics`` report the most
recent value among live processes - the queue depth is one fact, not a per-process sum.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

from butterfly_common.mq import STATUSES, Broker
from butterfly_common.redis_client import make_redis
from butterfly_common.settings import Settings

from .config import config_of

log = logging.getLogger(__name__)

FIRST_PASS_DELAY = 1.0


@cache
def queue_gauge() -> Any:
    """``butterfly_queue_messages{topic,status}``, created on first use.

    Not at import: ``butterfly serve`` imports the service package (entry point) before it
    sets ``PROMETHEUS_MULTIPROC_DIR``, and prometheus_client picks its value backend when
    it is first imported - importing it here would silently take every metric of the
    process out of multiprocess mode.
    """
    from prometheus_client import Gauge

    return Gauge("butterfly_queue_messages", "Messages per topic and status",
                 ["topic", "status"], multiprocess_mode="livemostrecent")


@dataclass
class PassReport:
    """What one maintenance pass did (returned for tests and the debug log)."""

    topics: int = 0
    reaped: int = 0
    pruned: int = 0


def run_once(broker: Broker, prune_after: float) -> PassReport:
    """One maintenance pass; a failing topic does not stop the others."""
    report = PassReport()
    gauge = queue_gauge()
    for topic in broker.topics():
        try:
            report.reaped += broker.reap(topic)
            counts = broker.counts(topic)
        except ValueError:  # a name the protocol refuses cannot hold messages
            continue
        report.topics += 1
        for status in STATUSES:
            gauge.labels(topic, status).set(counts[status])
    report.pruned = broker.prune_workers(prune_after)
    return report


def jittered(interval: float) -> float:
    """``interval`` +-20 %, so processes started together drift apart."""
    return interval * random.uniform(0.8, 1.2)  # noqa: S311 - jitter, not secrets


class Maintenance:
    """The maintenance thread; :meth:`stop` wakes it at once and waits for it."""

    def __init__(self, broker: Broker, interval: float, prune_after: float) -> None:
        self.broker = broker
        self.interval = interval
        self.prune_after = prune_after
        self.passes = 0
        self._stop = threading.Event()
        self._failing = False
        self._thread = threading.Thread(target=self._run, name="baichuan-maintenance",
                                        daemon=True)

    def start(self) -> Maintenance:
        self._thread.start()
        return self

    def _run(self) -> None:
        delay = min(FIRST_PASS_DELAY, self.interval) * random.random()  # noqa: S311
        while not self._stop.wait(delay):
            try:
                report = run_once(self.broker, self.prune_after)
                if self._failing:
                    log.warning("queue maintenance works again")
                self._failing = False
                log.debug("maintenance: %s", report)
            except Exception as exc:
                if not self._failing:  # once per outage, not every 15 s
                    log.warning("queue maintenance failed: %s: %s", type(exc).__name__, exc)
                self._failing = True
            self.passes += 1
            delay = jittered(self.interval)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop promptly: the wait is an Event, and a pass in progress is bounded by the
        Redis socket timeout."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)


def start_maintenance(settings: Settings) -> Callable[[], None]:
    """Service starter: run the maintenance thread on its own Redis client; returns stop."""
    conf = config_of(settings)
    broker = Broker(make_redis(settings.redis_url))
    return Maintenance(broker, conf.maintenance_interval, conf.prune_workers_after).start().stop
