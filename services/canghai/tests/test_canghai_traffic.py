"""Per-route traffic from /metrics text: deltas into per-minute Redis buckets, quantiles."""

from __future__ import annotations

from typing import Any

from butterfly_canghai import traffic

METRICS = """# TYPE butterfly_requests_total counter
butterfly_requests_total{method="GET",route="/a/ping",stat="OK"} %(ok)s
butterfly_requests_total{method="GET",route="/a/ping",stat="ERR_X"} %(bad)s
butterfly_requests_total{method="GET",route="/metrics",stat="200"} 4
# TYPE butterfly_request_seconds histogram
butterfly_request_seconds_bucket{le="0.01",method="GET",route="/a/ping"} %(fast)s
butterfly_request_seconds_bucket{le="0.1",method="GET",route="/a/ping"} %(all)s
butterfly_request_seconds_bucket{le="+Inf",method="GET",route="/a/ping"} %(all)s
butterfly_request_seconds_count{method="GET",route="/a/ping"} %(all)s
butterfly_request_seconds_sum{method="GET",route="/a/ping"} 1
"""


def text(ok: int, bad: int, fast: int) -> str:
    return METRICS % {"ok": ok, "bad": bad, "fast": fast, "all": ok + bad}


def test_quantile_interpolates_inside_buckets() -> None:
    assert traffic.quantile(0.5, {}) is None
    assert traffic.quantile(0.5, {0.1: 10.0, float("inf"): 10.0}) == 0.05
    p99 = traffic.quantile(0.99, {0.01: 50.0, 0.1: 100.0, float("inf"): 100.0})
    assert p99 is not None and abs(p99 - (0.01 + 0.09 * 49 / 50)) < 1e-9
    assert traffic.quantile(0.99, {0.1: 0.0, float("inf"): 5.0}) == 0.1  # beyond: the bound


def test_deltas_per_minute_and_a_restart(redis: Any) -> None:
    minute = 1_800_000_000 // 60 * 60
    traffic.record(redis, {"core": ("core", traffic.parse(text(10, 0, 10)))}, minute, 3600)
    assert redis.hgetall(f"{traffic.PREFIX}:{minute}") == {}  # the first scrape: baseline
    traffic.record(redis, {"core": ("core", traffic.parse(text(18, 2, 15)))}, minute, 3600)
    traffic.record(redis, {"core": ("core", traffic.parse(text(3, 1, 4)))}, minute + 60,
                   3600)  # a restarted process: its counters count from zero
    xs, hashes = traffic.read(redis, 2, now=minute + 60)
    assert xs == [minute, minute + 60]
    rows = {(r["route"], r["method"]): r for r in traffic.summarize(hashes, 120.0)}
    ping = rows[("/a/ping", "GET")]
    assert ping["calls"] == 10 + 4 and ping["errors"] == 2 + 1
    assert ping["error_rate"] == round(3 / 14, 4)
    assert 0 < ping["p50_ms"] <= 10.0 < ping["p99_ms"] <= 100.0
    assert rows[("/metrics", "GET")]["errors"] == 0  # a raw route's 200 is no error
    series = traffic.series(xs, hashes, "core", "/a/ping", "GET")
    assert series["rps"] == [round(10 / 60, 3), round(4 / 60, 3)]
    assert series["error_rate"] == [0.2, 0.25]
