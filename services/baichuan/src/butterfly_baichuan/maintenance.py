"""Background upkeep of the queue, one loop (``Periodic``) per server process.

Each pass (every ``BAICHUAN_MAINTENANCE_INTERVAL`` s, jittered so the processes of a
fleet do not fire together):

- ``reap`` every known topic: leases that ran out go back to the queue, expired
  finished / failed records are trimmed. Consumers reap the topics they serve; this also
  covers topics whose consumers are all gone, so their registries do not grow forever.
- prune workers silent for ``BAICHUAN_PRUNE_WORKERS_AFTER`` s.
- reconcile up to BATCH_SWEEP open batches (``mq/batch.py``): count the messages that
  ended without telling their batch (a consumer killed right after its complete, a lost
  message the reaper dead-lettered) and publish a callback left due; the callbacks' ids
  keep that exactly once whichever process does it.
- set the gauge ``butterfly_queue_messages{topic,status}``, and for a topic with limits
  ``butterfly_queue_limit{topic,limit}`` (``max_running``, ``rate``) and
  ``butterfly_queue_limited_claims{topic}``: claims a limit cut short while messages
  were ready, fleet-wide, since the limits were set (a count kept in Redis, so a gauge:
  it drops to nothing when the limits are cleared).

Every step is atomic and idempotent in the protocol, so any number of baichuan
processes may run it at once. Under ``butterfly serve`` prometheus_client runs in
multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``): every process writes its own copy of
the gauge, and ``multiprocess_mode="livemostrecent"`` makes ``/metrics`` report the most
recent value among live processes - the queue depth is one fact, not a per-process sum.
"""

from __future__ import annotations

import contextlib
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

from redis.exceptions import RedisError

from butterfly_common.mq import STATUSES, Broker, Limits
from butterfly_common.periodic import Periodic
from butterfly_common.redis_client import make_redis
from butterfly_common.settings import Settings

from .config import config_of

log = logging.getLogger(__name__)

FIRST_PASS_DELAY = 1.0
#: Open batches reconciled per pass, oldest first.
BATCH_SWEEP = 100
#: Each pause is the interval +-20 %, so processes started together drift apart.
JITTER = 0.2


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


@cache
def limit_gauges() -> tuple[Any, Any, Any]:
    """``butterfly_queue_limit{topic,limit}``, ``butterfly_queue_limited_claims{topic}``
    and ``butterfly_queue_group_held_claims{topic}`` (created on first use, as
    :func:`queue_gauge`)."""
    from prometheus_client import Gauge

    return (Gauge("butterfly_queue_limit", "A topic's limit (max_running, or rate per "
                  "rate_window)", ["topic", "limit"], multiprocess_mode="livemostrecent"),
            Gauge("butterfly_queue_limited_claims", "Claims a topic's limits cut short "
                  "while messages were ready, since they were set", ["topic"],
                  multiprocess_mode="livemostrecent"),
            Gauge("butterfly_queue_group_held_claims", "Claims that passed over a "
                  "concurrency group at its max_running (its messages waiting), since the "
                  "limits were set", ["topic"], multiprocess_mode="livemostrecent"))


def show_limits(topic: str, limits: Limits) -> None:
    """Set ``topic``'s limit gauges; drop those of a limit that is off (a series never
    shown in this process has nothing to drop)."""
    limit, held, group_held = limit_gauges()
    for name, value in (("max_running", limits.max_running), ("rate", limits.rate),
                        ("group_max_running", limits.group_max_running)):
        if value is not None:
            limit.labels(topic, name).set(value)
        else:
            with contextlib.suppress(KeyError):
                limit.remove(topic, name)
    if limits.limited:
        held.labels(topic).set(limits.held)
        group_held.labels(topic).set(limits.group_held)
    else:
        for gauge in (held, group_held):
            with contextlib.suppress(KeyError):
                gauge.remove(topic)


@dataclass
class PassReport:
    """What one maintenance pass did (returned for tests and the debug log)."""

    topics: int = 0
    reaped: int = 0
    pruned: int = 0
    batches: int = 0


def run_once(broker: Broker, prune_after: float) -> PassReport:
    """One maintenance pass; a failing topic does not stop the others."""
    report = PassReport()
    gauge = queue_gauge()
    for topic in broker.topics():
        try:
            report.reaped += broker.reap(topic)
            counts = broker.counts(topic)
            limits = broker.limits(topic)
        except ValueError:  # a name the protocol refuses cannot hold messages
            continue
        report.topics += 1
        for status in STATUSES:
            gauge.labels(topic, status).set(counts[status])
        show_limits(topic, limits)
    report.pruned = broker.prune_workers(prune_after)
    try:
        report.batches = broker.sweep_batches(BATCH_SWEEP)
    except RedisError as exc:  # the open set's shard: the topics above went on anyway
        log.warning("maintenance: the batch sweep failed: %s", exc)
    return report


class Maintenance(Periodic):
    """The maintenance loop of one process (:class:`~butterfly_common.periodic.Periodic`:
    :meth:`stop` wakes it at once, an outage is logged once)."""

    def __init__(self, broker: Broker, interval: float, prune_after: float) -> None:
        first = min(FIRST_PASS_DELAY, interval) * random.random()  # noqa: S311 - spread
        super().__init__("baichuan-maintenance", interval, self.run_pass, jitter=JITTER,
                         first_delay=first, logger=log)
        self.broker = broker
        self.prune_after = prune_after

    @property
    def passes(self) -> int:
        """Passes run so far, failed ones included."""
        return self.runs

    def run_pass(self) -> None:
        report = run_once(self.broker, self.prune_after)
        log.debug("maintenance: %s", report)


def start_maintenance(settings: Settings) -> Callable[[], None]:
    """Service starter: run the maintenance loop on its own Redis client; returns stop."""
    conf = config_of(settings)
    broker = Broker(make_redis(settings.redis_url))
    return Maintenance(broker, conf.maintenance_interval, conf.prune_workers_after).start().stop
