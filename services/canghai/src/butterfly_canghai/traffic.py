"""API traffic per service, route and method, from every instance's ``/metrics``.

The sampler hands each scrape to :func:`record`: the counters ``butterfly_requests_total``
(by route, method, stat) and the histogram ``butterfly_request_seconds`` become deltas
since the previous sample (a restarted process counts from zero) added into one Redis
HASH per minute, ``canghai:traffic:<minute>`` (field ``service|route|method|metric``,
expiring after ``CANGHAI_SERIES_HOURS``), so the page survives a console restart. Reading
an hour is one pipeline of 60 HGETALLs; requests/s, error rate and p50/p99 (interpolated
inside the histogram's buckets, as Prometheus' ``histogram_quantile`` does) are computed
from the summed minutes.
"""

from __future__ import annotations

import json
import math
import time
from collections import defaultdict
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

PREFIX = "canghai:traffic"
LAST_KEY = "canghai:traffic:last"
SEP = "|"


def ok_stat(stat: str) -> bool:
    """An envelope's ``OK``, or a raw route's HTTP status below 400 (``/metrics``)."""
    return stat == "OK" or (stat.isdigit() and int(stat) < 400)


def parse(text: str) -> dict[str, float]:
    """Cumulative values by ``route|method|metric``: ``n`` calls, ``e`` calls whose stat
    is not OK, ``le=<bound>`` histogram counts."""
    out: dict[str, float] = defaultdict(float)
    for family in text_string_to_metric_families(text):
        if family.name == "butterfly_requests":
            for s in family.samples:
                if s.name != "butterfly_requests_total":
                    continue
                base = f"{s.labels.get('route', '')}{SEP}{s.labels.get('method', '')}"
                out[f"{base}{SEP}n"] += s.value
                if not ok_stat(s.labels.get("stat", "")):
                    out[f"{base}{SEP}e"] += s.value
        elif family.name == "butterfly_request_seconds":
            for s in family.samples:
                if s.name != "butterfly_request_seconds_bucket":
                    continue
                base = f"{s.labels.get('route', '')}{SEP}{s.labels.get('method', '')}"
                out[f"{base}{SEP}le={s.labels.get('le')}"] += s.value
    return dict(out)


def record(client: Any, scraped: dict[str, tuple[str, dict[str, float]]], minute: int,
           retention: int) -> None:
    """Add the deltas of ``scraped`` (instance -> (service, parsed counters)) since the
    last call into ``minute``'s bucket."""
    raw = client.get(LAST_KEY)
    last = json.loads(raw) if raw else {}
    deltas: dict[str, float] = defaultdict(float)
    for inst, (service, values) in scraped.items():
        if inst not in last:
            continue  # the first scrape of an instance is its baseline
        before = last[inst]
        restarted = any(values.get(k, 0.0) < v for k, v in before.items())
        for key, value in values.items():
            # a series first seen now started from zero since the last scrape
            delta = value if restarted else value - before.get(key, 0.0)
            if delta > 0:
                deltas[f"{service}{SEP}{key}"] += delta
    bucket = f"{PREFIX}:{minute}"
    pipe = client.pipeline(transaction=False)
    for field, delta in deltas.items():
        pipe.hincrbyfloat(bucket, field, delta)
    pipe.expire(bucket, retention)
    pipe.set(LAST_KEY, json.dumps({k: v[1] for k, v in scraped.items()}), ex=retention)
    pipe.execute()


def _minutes(minutes: int, now: float) -> list[int]:
    end = int(now // 60) * 60
    return list(range(end - (minutes - 1) * 60, end + 60, 60))


def read(client: Any, minutes: int, now: float | None = None
         ) -> tuple[list[int], list[dict[str, float]]]:
    """The per-minute buckets of the last ``minutes`` minutes (oldest first)."""
    xs = _minutes(minutes, time.time() if now is None else now)
    pipe = client.pipeline(transaction=False)
    for x in xs:
        pipe.hgetall(f"{PREFIX}:{x}")
    return xs, [{k: float(v) for k, v in h.items()} for h in pipe.execute()]


def quantile(q: float, buckets: dict[float, float]) -> float | None:
    """``q`` of a cumulative histogram ``{upper bound: count}`` (None without calls)."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    total = buckets[bounds[-1]]
    rank = q * total
    prev_bound, prev_count = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return prev_bound  # beyond the largest finite bucket: its bound
            span = count - prev_count
            return prev_bound + (bound - prev_bound) * ((rank - prev_count) / span if span
                                                        else 0.0)
        prev_bound, prev_count = bound, count
    return prev_bound


def _split(field: str) -> tuple[str, str, str, str]:
    service, rest = field.split(SEP, 1)
    route_method, metric = rest.rsplit(SEP, 1)
    route, method = route_method.rsplit(SEP, 1)
    return service, route, method, metric


def summarize(hashes: list[dict[str, float]], seconds: float) -> list[dict[str, Any]]:
    """One row per (service, route, method) over the given minutes: calls, requests/s,
    error rate, p50/p99 in ms; busiest first."""
    sums: dict[tuple[str, str, str], dict[str, Any]] = {}
    for h in hashes:
        for field, value in h.items():
            try:
                service, route, method, metric = _split(field)
            except ValueError:
                continue
            row = sums.setdefault((service, route, method), {"n": 0.0, "e": 0.0, "b": {}})
            if metric.startswith("le="):
                bound = float(metric[3:])
                row["b"][bound] = row["b"].get(bound, 0.0) + value
            elif metric in ("n", "e"):
                row[metric] += value
    out = []
    for (service, route, method), row in sums.items():
        p50, p99 = quantile(0.5, row["b"]), quantile(0.99, row["b"])
        out.append({"service": service, "route": route, "method": method,
                    "calls": int(row["n"]), "rps": round(row["n"] / seconds, 3),
                    "error_rate": round(row["e"] / row["n"], 4) if row["n"] else 0.0,
                    "errors": int(row["e"]),
                    "p50_ms": None if p50 is None else round(p50 * 1000, 1),
                    "p99_ms": None if p99 is None else round(p99 * 1000, 1)})
    return sorted(out, key=lambda r: (-r["calls"], r["service"], r["route"], r["method"]))


def series(xs: list[int], hashes: list[dict[str, float]], service: str = "",
           route: str = "", method: str = "") -> dict[str, list]:
    """Per-minute requests/s, error rate and p50/p99 (ms) of one route (or of everything
    matching the given parts) for the chart."""
    out: dict[str, list] = {"t": xs, "rps": [], "error_rate": [], "p50_ms": [], "p99_ms": []}
    for h in hashes:
        picked = {}
        for field, value in h.items():
            try:
                s, r, m, _ = _split(field)
            except ValueError:
                continue
            if (not service or s == service) and (not route or r == route) \
                    and (not method or m == method):
                picked[field] = value
        rows = summarize([picked], 60.0)
        n = sum(r["calls"] for r in rows)
        errors = sum(r["errors"] for r in rows)
        buckets: dict[float, float] = defaultdict(float)
        for field, value in picked.items():
            metric = field.rsplit(SEP, 1)[1]
            if metric.startswith("le="):
                buckets[float(metric[3:])] += value
        p50, p99 = quantile(0.5, buckets), quantile(0.99, buckets)
        out["rps"].append(round(n / 60.0, 3))
        out["error_rate"].append(round(errors / n, 4) if n else None)
        out["p50_ms"].append(None if p50 is None else round(p50 * 1000, 1))
        out["p99_ms"].append(None if p99 is None else round(p99 * 1000, 1))
    return out
