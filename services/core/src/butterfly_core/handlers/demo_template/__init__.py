"""demo_template: a server-rendered page (Jinja2) of this service's own access log.

The original's ``demo_template``: requests per minute (an inline SVG chart), answers per
stat / HTTP code and the slowest routes, from ``acc.log``. ``report`` is the HTML page (a
``@raw`` handler: it picks its own content type), ``stats`` its JSON twin with the same
numbers in the usual envelope. Both are reads, bounded by ``minutes`` and ``max_mb``
(accesslog.py): a report never reads more than ``max_mb`` of the log, whatever its size.
The page loads nothing from anywhere (its Content-Security-Policy says so).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from butterfly_common import Refusal, Request, api, raw, retstat, runtime
from butterfly_common.logs import ACCESS_LOG, log_directory
from butterfly_common.params import ParamError

from .accesslog import Report, read_report
from .chart import bar_chart

MINUTES = (1, 60, 1440)  # (least, default, most) of each parameter
MAX_MB = (1, 4, 32)
TOP = (1, 10, 50)
MB = 1024 * 1024
NO_LOG = "ERR_NO_ACCESS_LOG"
STATUSES = {NO_LOG: 409, retstat.ERR_UNAVAILABLE: 503}
#: The page's whole world: its own inline style and SVG; no script, no fetch, no frame.
CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")

_templates = Environment(loader=PackageLoader(__name__, "templates"),
                         autoescape=select_autoescape(["html"]), undefined=StrictUndefined)


def _bounded(name: str, value: int, bounds: tuple[int, int, int]) -> int:
    least, _, most = bounds
    if not least <= value <= most:
        raise ParamError(f"invalid: {name} must be between {least} and {most}")
    return value


def _access_log() -> tuple[str, Path]:
    """This service's name and its access log file (where logs.configure_logging put it)."""
    current = runtime.current_runtime()
    service = current.service.name if current is not None else "core"
    directory = log_directory(runtime.get_settings(), service)
    if directory is None:
        raise Refusal(NO_LOG, "the access log goes to stdout (BUTTERFLY_LOG_DIR=-): there "
                      "is no acc.log to read", http=STATUSES[NO_LOG])
    return service, directory / ACCESS_LOG


def _report(minutes: int, max_mb: int, top: int) -> tuple[str, Report]:
    _bounded("minutes", minutes, MINUTES)
    _bounded("max_mb", max_mb, MAX_MB)
    _bounded("top", top, TOP)
    service, path = _access_log()
    try:
        return service, read_report(path, minutes=minutes, max_bytes=max_mb * MB)
    except OSError as exc:  # unreadable (permissions, a directory in its place...)
        raise Refusal(retstat.ERR_UNAVAILABLE, f"access log unreadable: "
                      f"{type(exc).__name__}", http=STATUSES[retstat.ERR_UNAVAILABLE]) from None


@api(topic=False, statuses=STATUSES)
def stats(req: Request, minutes: int = MINUTES[1], max_mb: int = MAX_MB[1],
          top: int = TOP[1]) -> tuple[str, dict[str, Any]]:
    """Access-log statistics as JSON: requests per minute, answers per stat, the slowest
    routes, of the last ``minutes`` (1-1440) minutes within the newest ``max_mb`` (1-32)
    MB of acc.log; ``top`` (1-50) slowest routes."""
    _, report = _report(minutes, max_mb, top)
    return retstat.OK, {"data": report.as_dict(top)}


@raw
def report(req: Request, minutes: int = MINUTES[1], max_mb: int = MAX_MB[1],
           top: int = TOP[1]) -> tuple[int, str, list[tuple[str, str]]]:
    """The same statistics as an HTML page with a requests-per-minute chart (inline SVG,
    no script); the parameters are those of ``stats``."""
    service, found = _report(minutes, max_mb, top)
    data = found.as_dict(top)
    chart = bar_chart([(m["minute"], m["count"]) for m in data["per_minute"]])
    limits = {"max_mb": max_mb, "top": top, "minutes_min": MINUTES[0],
              "minutes_max": MINUTES[2], "max_mb_min": MAX_MB[0], "max_mb_max": MAX_MB[2],
              "top_min": TOP[0], "top_max": TOP[2]}
    json_url = "stats?" + urlencode({"minutes": minutes, "max_mb": max_mb, "top": top})
    page = _templates.get_template("report.html").render(
        service=service, data=data, chart=chart, limits=limits, json_url=json_url)
    return retstat.HTTP_OK, page, [("Content-Type", "text/html; charset=utf-8"),
                                   ("Content-Security-Policy", CSP),
                                   ("X-Content-Type-Options", "nosniff")]
