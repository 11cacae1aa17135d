"""Prometheus metrics: request count and latency per route, method and stat.

Under ``butterfly serve`` several worker processes answer ``/metrics``; ``serve`` sets
``PROMETHEUS_MULTIPROC_DIR`` before anything imports prometheus_client, and every worker
then reports the sum over all of them.
"""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
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


_children: dict[tuple[str, str, str], tuple[Any, ...]] = {}


def observe(route: str, method: str, stat: object, seconds: float) -> None:
    """Count one call; unknown paths share one label so scanners cannot explode cardinality."""
    key = (route, method, str(stat))
    child = _children.get(key)
    if child is None:  # labels() validates and locks: do it once per label set
        child = _children[key] = (REQUESTS.labels(*key), LATENCY.labels(route, method))
    child[0].inc()
    child[1].observe(seconds)


def render() -> tuple[bytes, str]:
    """The exposition text of every process of this service."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
