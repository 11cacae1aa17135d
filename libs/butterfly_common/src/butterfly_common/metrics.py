"""Prometheus metrics: request count and latency per route, method and stat.

Under ``butterfly serve`` several worker processes answer ``/metrics``; ``serve`` sets
``PROMETHEUS_MULTIPROC_DIR`` before anything imports prometheus_client, and every worker
then reports the sum over all of them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cache
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

REQUESTS = Counter("butterfly_requests_total", "Handler calls, by route, method and stat",
                   ["route", "method", "stat"])
LATENCY = Histogram("butterfly_request_seconds", "Handler call latency in seconds",
                    ["route", "method"],
                    buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10))
UNKNOWN_ROUTE = "<unknown>"
CONSUMER_RESTARTS = Counter("butterfly_consumer_thread_restarts_total",
                            "Queue-consumer threads that died and were replaced, by role",
                            ["role"])
CONSUMER_ERRORS = Counter("butterfly_consumer_errors_total",
                          "Exceptions a queue consumer contained (the thread lived on), "
                          "by stage", ["stage"])
#: The roles and stages above: fixed sets, so the series count is bounded.
CONSUMER_ROLES = ("fetch", "keeper", "run", "supervisor")
CONSUMER_STAGES = ("call", "record", "log", "run", "fetch", "keep")


_children: dict[tuple[str, str, str], tuple[Any, ...]] = {}
#: Label values come from fixed sets, so no client can grow the series count: methods
#: outside this set (405 anyway) count as OTHER, unknown paths share UNKNOWN_ROUTE, and
#: each route keeps at most MAX_STATS distinct stats (its code's own; the rest OTHER).
METHOD_LABELS = frozenset(("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS",
                           "QUEUE"))
MAX_STATS = 32
OTHER = "OTHER"
_stats: dict[str, set[str]] = {}


def observe(route: str, method: str, stat: object, seconds: float) -> None:
    """Count one call under bounded labels (see :data:`METHOD_LABELS`)."""
    if method not in METHOD_LABELS:
        method = OTHER
    text = str(stat)
    key = (route, method, text)
    if key not in _children:
        seen = _stats.setdefault(route, set())
        if text not in seen:
            if len(seen) >= MAX_STATS:
                key = (route, method, OTHER)
            else:
                seen.add(text)
    child = _children.get(key)
    if child is None:  # labels() validates and locks: do it once per label set
        child = _children[key] = (REQUESTS.labels(*key), LATENCY.labels(route, method))
    child[0].inc()
    child[1].observe(seconds)


def consumer_series() -> None:
    """Create the consumer series at 0, so dashboards see "no restarts" as a value."""
    for role in CONSUMER_ROLES:
        CONSUMER_RESTARTS.labels(role)
    for stage in CONSUMER_STAGES:
        CONSUMER_ERRORS.labels(stage)


def consumer_restart(role: str) -> None:
    """Count one replaced consumer thread."""
    CONSUMER_RESTARTS.labels(role if role in CONSUMER_ROLES else "other").inc()


def consumer_error(stage: str) -> None:
    """Count one exception a consumer contained at ``stage``."""
    CONSUMER_ERRORS.labels(stage if stage in CONSUMER_STAGES else "other").inc()


def render() -> tuple[bytes, str]:
    """The exposition text of every process of this service."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


@dataclass(frozen=True)
class PeriodicMetrics:
    """The series of ``periodic.Periodic`` loops, by ``loop`` (names are code constants)."""

    last_success: Any
    last_failure: Any
    failures: Any
    consecutive: Any
    lease_held: Any


@cache
def periodic_metrics() -> PeriodicMetrics:
    """Created on first use (a loop's start), once per process. Across the workers of a
    service: the latest success and failure (max), failures summed, the worst current
    streak of failures and the number of live processes holding the loop's lease."""
    return PeriodicMetrics(
        last_success=Gauge("butterfly_periodic_last_success_timestamp",
                           "Unix time a background loop last ran without error",
                           ["loop"], multiprocess_mode="max"),
        last_failure=Gauge("butterfly_periodic_last_failure_timestamp",
                           "Unix time a background loop last failed", ["loop"],
                           multiprocess_mode="max"),
        failures=Counter("butterfly_periodic_failures_total",
                         "Runs of a background loop that raised", ["loop"]),
        consecutive=Gauge("butterfly_periodic_consecutive_failures",
                          "Failed runs in a row of a background loop (0: working)",
                          ["loop"], multiprocess_mode="livemax"),
        lease_held=Gauge("butterfly_periodic_lease_held",
                         "Processes of this instance holding a background loop's lease "
                         "(at most 1 across the fleet)", ["loop"],
                         multiprocess_mode="livesum"),
    )
