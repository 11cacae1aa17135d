"""Statistics of the tail of an access log: requests per minute, answers per stat, the
slowest routes.

Bounded in both directions so a report costs the same on a 64 MB log as on a small one:
only the last ``max_bytes`` of ``acc.log`` (and of ``acc.log.1``... when ``acc.log`` was
just rotated and is shorter) are read, line by line from a seek, never the whole file; only
lines of the last ``minutes`` minutes are counted; at most :data:`MAX_ROUTES` routes and
:data:`MAX_STATS` stats are kept apart (the rest, a scanner's random paths, add up under
one name). A line that does not parse (cut, binary, another format) is skipped and
counted, never an error.

Line layout (butterfly_common.logs.LINE_FORMAT + access_line), tab-separated, every value
escaped so a line holds no tab or newline of its own::

    date time  pid  module:line  ip  reqid  METHOD  /route  cost:0.001  stat:OK  user:...
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

#: The longest line read whole; longer ones are skipped as malformed (the framework caps
#: every logged value, so a real line is far shorter).
MAX_LINE = 64 * 1024
MAX_ROUTES = 500
MAX_STATS = 50
OTHER_ROUTES = "(other routes)"
OTHER_STATS = "(other)"
_DATE = re.compile(rb"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")
MINUTE_FORMAT = "%Y-%m-%d %H:%M"
SECOND_FORMAT = "%Y-%m-%d %H:%M:%S"  # butterfly_common.logs.DATEFMT, local time


@dataclass
class RouteCost:
    """What one route cost in the window."""

    count: int = 0
    total: float = 0.0
    slowest: float = 0.0

    def add(self, cost: float) -> None:
        self.count += 1
        self.total += cost
        self.slowest = max(self.slowest, cost)


@dataclass
class Report:
    """The numbers of one window; :meth:`as_dict` is the JSON twin of the page."""

    minutes: int
    max_bytes: int
    minute_labels: list[str]
    per_minute: dict[str, int]
    by_stat: dict[str, int] = field(default_factory=dict)
    routes: dict[str, RouteCost] = field(default_factory=dict)
    total: int = 0
    files: int = 0
    bytes_read: int = 0
    lines: int = 0
    skipped: int = 0
    outside: int = 0
    #: True when the byte bound stopped the reading before the window's first minute:
    #: the counts are those of the newest ``max_bytes`` only
    truncated: bool = False

    def count(self, minute: str, route: str, stat: str, cost: float) -> None:
        if minute not in self.per_minute:  # a clock step (DST) made a minute twice
            return
        self.total += 1
        self.per_minute[minute] += 1
        if stat not in self.by_stat and len(self.by_stat) >= MAX_STATS:
            stat = OTHER_STATS
        self.by_stat[stat] = self.by_stat.get(stat, 0) + 1
        if route not in self.routes and len(self.routes) >= MAX_ROUTES:
            route = OTHER_ROUTES
        self.routes.setdefault(route, RouteCost()).add(cost)

    def stats(self) -> list[dict[str, Any]]:
        """Answers per stat (an API's stat, a raw handler's HTTP code), most first."""
        ranked = sorted(self.by_stat.items(), key=lambda kv: (-kv[1], kv[0]))
        return [{"stat": stat, "count": n} for stat, n in ranked]

    def slowest(self, top: int) -> list[dict[str, Any]]:
        """The ``top`` routes by average cost, slowest first."""
        ranked = sorted(self.routes.items(),
                        key=lambda kv: (-kv[1].total / kv[1].count, kv[0]))[:top]
        return [{"route": route, "count": c.count,
                 "avg_ms": round(c.total / c.count * 1000, 3),
                 "max_ms": round(c.slowest * 1000, 3)} for route, c in ranked]

    def minutes_series(self) -> list[dict[str, Any]]:
        return [{"minute": m, "count": self.per_minute[m]} for m in self.minute_labels]

    def as_dict(self, top: int) -> dict[str, Any]:
        return {
            "window": {"minutes": self.minutes, "from": self.minute_labels[0],
                       "to": self.minute_labels[-1], "max_bytes": self.max_bytes},
            "read": {"files": self.files, "bytes": self.bytes_read, "lines": self.lines,
                     "skipped": self.skipped, "outside_window": self.outside,
                     "truncated": self.truncated},
            "total": self.total,
            "per_minute": self.minutes_series(),
            "by_stat": self.stats(),
            "slowest": self.slowest(top),
            "routes": len(self.routes),
        }


def minute_window(minutes: int, now: float) -> tuple[list[str], str]:
    """The labels of the last ``minutes`` minutes (the current one last) and the first
    second of the window, both in the log's local-time format."""
    start = int(now) - int(now) % 60 - (minutes - 1) * 60
    labels = [time.strftime(MINUTE_FORMAT, time.localtime(start + i * 60))
              for i in range(minutes)]
    return list(dict.fromkeys(labels)), time.strftime(SECOND_FORMAT, time.localtime(start))


def log_files(path: Path) -> list[Path]:
    """``acc.log`` then its rotated ``acc.log.1``, ``acc.log.2``... as far as they exist."""
    files = [path]
    n = 1
    while (candidate := path.with_name(f"{path.name}.{n}")).is_file():
        files.append(candidate)
        n += 1
    return files


def _lines(stream: BinaryIO, start: int, end: int) -> Iterator[bytes | None]:
    """The lines between byte ``start`` (a cut first line skipped) and ``end``; None
    for a line over :data:`MAX_LINE` or cut at ``end`` (a write still under way)."""
    stream.seek(max(0, start - 1))
    pos = start
    if start > 0 and stream.read(1) != b"\n":  # inside a line: its head is not ours
        while True:
            chunk = stream.readline(MAX_LINE)
            pos += len(chunk)
            if not chunk or chunk.endswith(b"\n") or pos >= end:
                break
    while pos < end:
        line = stream.readline(min(MAX_LINE, end - pos))
        if not line:
            return
        pos += len(line)
        if line.endswith(b"\n"):
            yield line
            continue
        yield None
        while pos < end and not line.endswith(b"\n"):  # the rest of an over-long line
            line = stream.readline(min(MAX_LINE, end - pos))
            if not line:
                return
            pos += len(line)


def parse(line: bytes) -> tuple[str, str, str, float] | None:
    """``(second, route, stat, cost)`` of one access line, None when it is not one."""
    fields = line.rstrip(b"\r\n").split(b"\t")
    if len(fields) < 9 or not _DATE.fullmatch(fields[0]):
        return None
    cost_field, stat_field = fields[7], fields[8]
    if not cost_field.startswith(b"cost:") or not stat_field.startswith(b"stat:"):
        return None
    try:
        cost = float(cost_field[5:])
    except ValueError:
        return None
    if not math.isfinite(cost) or cost < 0:
        return None
    route = fields[6].decode("utf-8", "replace")
    stat = stat_field[5:].decode("utf-8", "replace")
    if not route or not stat:
        return None
    return fields[0].decode("ascii"), route, stat, cost


def read_report(path: Path, *, minutes: int, max_bytes: int,
                now: float | None = None) -> Report:
    """The numbers of the last ``minutes`` minutes found in the last ``max_bytes`` bytes
    of the access log at ``path`` (and its rotated predecessors)."""
    now = time.time() if now is None else now
    labels, first_second = minute_window(minutes, now)
    last_second = time.strftime(SECOND_FORMAT, time.localtime(now))
    report = Report(minutes, max_bytes, labels, dict.fromkeys(labels, 0))
    budget = max_bytes
    covered = cut = False
    for file in log_files(path):
        if budget <= 0:
            cut = True
            break
        try:
            with file.open("rb") as stream:
                size = stream.seek(0, 2)
                start = max(0, size - budget)
                budget -= size - start
                report.files += 1
                report.bytes_read += size - start
                covered = not _scan(report, _lines(stream, start, size), first_second,
                                    last_second)
        except FileNotFoundError:  # not written yet, or rotated away while we looked
            continue
        if covered:
            break  # this file began before the window: the older ones did too
        if start > 0:
            cut = True
            break
    report.truncated = cut and not covered
    return report


def _scan(report: Report, lines: Iterator[bytes | None], first: str, last: str) -> bool:
    """Count ``lines`` into ``report``; False once a line older than the window is seen."""
    older = False
    for line in lines:
        report.lines += 1
        parsed = parse(line) if line is not None else None
        if parsed is None:
            report.skipped += 1
            continue
        second, route, stat, cost = parsed
        if not first <= second <= last:
            report.outside += 1
            older = older or second < first
            continue
        report.count(second[:16], route, stat, cost)
    return not older
