"""Time series for the console's charts, sampled into bounded per-minute buckets in Redis.

Every ``CANGHAI_SAMPLE_SECONDS`` one process of the fleet (a ``SET NX`` per tick decides
which) records queue depth (gauges: queued, started, failed) and the processed / failed
message counts, taken from each service's ``/metrics`` (``butterfly_requests_total`` with
method ``QUEUE``; deltas between samples, a restarted counter counts from zero).

Each series is one Redis HASH ``canghai:series:<name>`` (field = minute epoch, value =
number): one key per command, so it works through Twemproxy, and history survives a
console restart. Fields older than ``CANGHAI_SERIES_HOURS`` are dropped as it goes.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

import requests
from prometheus_client.parser import text_string_to_metric_families

from butterfly_common.periodic import Periodic

from . import audit, fleet, queues, traffic
from .config import CanghaiConfig

log = logging.getLogger("butterfly.canghai.sampler")

PREFIX = "canghai:series"
GAUGES = ("queued", "started", "failed")
COUNTERS = ("processed", "errors")
LAST_KEY = "canghai:sampler:last"
TICK_KEY = "canghai:sampler:tick"


def series_key(name: str) -> str:
    return f"{PREFIX}:{name}"


def queue_counters(text: str) -> tuple[float, float]:
    """(messages handled, of which failed) from a service's Prometheus text."""
    total = failed = 0.0
    for family in text_string_to_metric_families(text):
        if family.name != "butterfly_requests":
            continue
        for sample in family.samples:
            if sample.name != "butterfly_requests_total" or sample.labels.get("method") != "QUEUE":
                continue
            total += sample.value
            if sample.labels.get("stat") != "OK":
                failed += sample.value
    return total, failed


class Sampler:
    def __init__(self, client: Any, cfg: CanghaiConfig) -> None:
        self.client = client
        self.cfg = cfg
        self.routes: dict[str, tuple[str, dict[str, float]]] = {}

    def claim(self, now: float) -> bool:
        """One process per tick records the sample."""
        tick = int(now // self.cfg.sample_seconds)
        return bool(self.client.set(f"{TICK_KEY}:{tick}", "1", nx=True,
                                    px=int(self.cfg.sample_seconds * 2000)))

    def scrape(self) -> dict[str, list[float]]:
        """Queue counters per instance; the per-route traffic counters of the same
        scrape are kept in ``self.routes`` for :func:`traffic.record`."""
        out = {}
        self.routes = {}
        for inst in fleet.instances(self.cfg):
            try:
                reply = requests.get(f"{inst.url}/metrics", timeout=self.cfg.probe_timeout)
                if reply.ok:
                    out[inst.name] = list(queue_counters(reply.text))
                    self.routes[inst.name] = (inst.service, traffic.parse(reply.text))
            except (requests.RequestException, ValueError):
                continue
        return out

    def sample(self, now: float | None = None) -> bool:
        """Record one sample if this process won the tick; True when it did."""
        now = time.time() if now is None else now
        if not self.claim(now):
            return False
        minute = int(now // 60) * 60
        totals = queues.totals(queues.topic_counts())
        current = self.scrape()
        raw = self.client.get(LAST_KEY)
        last = json.loads(raw) if raw else {}
        processed = errors = 0.0
        for name, (total, failed) in current.items():
            prev_total, prev_failed = last.get(name, [total, failed])
            processed += total - prev_total if total >= prev_total else total
            errors += failed - prev_failed if failed >= prev_failed else failed
        pipe = self.client.pipeline(transaction=False)
        retention = int(self.cfg.series_hours * 3600)
        for name in GAUGES:
            pipe.hset(series_key(name), str(minute), totals[name])
        for name, value in (("processed", processed), ("errors", errors)):
            pipe.hincrbyfloat(series_key(name), str(minute), value)
        pipe.set(LAST_KEY, json.dumps(current), ex=retention)
        for name in (*GAUGES, *COUNTERS):
            pipe.expire(series_key(name), retention)
        pipe.execute()
        traffic.record(self.client, self.routes, minute, retention)
        self.trim(minute - retention)
        audit.prune_if_due(self.client, self.cfg.audit_days, now)
        return True

    def trim(self, before: int) -> None:
        pipe = self.client.pipeline(transaction=False)
        for name in (*GAUGES, *COUNTERS):
            pipe.hkeys(series_key(name))
        stale = []
        for name, fields in zip((*GAUGES, *COUNTERS), pipe.execute(), strict=True):
            old = [f for f in fields if int(f) < before]
            if old:
                stale.append((name, old))
        if stale:
            pipe = self.client.pipeline(transaction=False)
            for name, old in stale:
                pipe.hdel(series_key(name), *old)
            pipe.execute()


def read_series(client: Any, hours: float, now: float | None = None) -> dict[str, list]:
    """Aligned arrays for the charts: ``t`` (minute epochs) and one list per series
    (None where a gauge has no sample, 0 for counters)."""
    now = time.time() if now is None else now
    end = int(now // 60) * 60
    start = end - int(hours * 3600) + 60
    names = (*GAUGES, *COUNTERS)
    pipe = client.pipeline(transaction=False)
    for name in names:
        pipe.hgetall(series_key(name))
    data = dict(zip(names, pipe.execute(), strict=True))
    xs = list(range(start, end + 60, 60))
    out: dict[str, list] = {"t": xs}
    for name in names:
        values = data[name]
        default = 0 if name in COUNTERS else None
        out[name] = [_num(values.get(str(x)), default) for x in xs]
    return out


def _num(value: str | None, default: Any) -> Any:
    if value is None:
        return default
    n = float(value)
    return int(n) if n.is_integer() else round(n, 3)


def start_sampler(settings: Any) -> Callable[[], None] | None:
    """The sampler loop of this server process (a starter of the canghai Service): at
    once, then just past every multiple of ``CANGHAI_SAMPLE_SECONDS`` of the wall clock,
    so every process competes for the same tick."""
    from butterfly_common.runtime import get_config, get_redis

    cfg = get_config(CanghaiConfig)
    sampler = Sampler(get_redis(), cfg)
    loop = Periodic("canghai-sampler", cfg.sample_seconds, sampler.sample, align=True,
                    first_delay=0, logger=log).start()
    return lambda: loop.stop(5)
