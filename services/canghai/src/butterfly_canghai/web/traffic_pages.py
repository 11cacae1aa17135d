"""The API traffic page: per service, route and method, requests/s, error rate and
p50/p99 latency over the last minutes, and a per-minute chart of one route (or all)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, jsonify, request

from butterfly_common.runtime import get_redis

from .. import traffic
from .common import needs, page

bp = Blueprint("traffic", __name__, url_prefix="/console/traffic")
RANGES = {"5m": 5, "1h": 60, "1d": 1440}


def _range() -> tuple[str, int]:
    name = request.args.get("range") or "5m"
    if name not in RANGES:
        abort(400, f"range: one of {', '.join(RANGES)}")
    return name, RANGES[name]


def _part(name: str) -> str:
    value = (request.args.get(name) or "").strip()
    if len(value) > 200:
        abort(400, f"{name} longer than 200 characters")
    return value


@bp.get("")
@needs("viewer")
def traffic_page() -> Any:
    name, minutes = _range()
    service = _part("service")
    _, hashes = traffic.read(get_redis(), minutes)
    rows = traffic.summarize(hashes, minutes * 60.0)
    services = sorted({r["service"] for r in rows})
    if service:
        rows = [r for r in rows if r["service"] == service]
    return page("traffic.html", active="traffic", rows=rows, range=name, ranges=RANGES,
                service=service, services=services, route=_part("route"),
                method=_part("method"))


@bp.get("/series.json")
@needs("viewer")
def traffic_series() -> Any:
    _, minutes = _range()
    minutes = max(minutes, 60)  # a chart of five points says little: at least the hour
    xs, hashes = traffic.read(get_redis(), minutes)
    return jsonify(traffic.series(xs, hashes, _part("service"), _part("route"),
                                  _part("method")))
