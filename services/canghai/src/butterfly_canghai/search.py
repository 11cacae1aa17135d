"""Follow one request across the fleet by its ``x-reqid``.

Sources, each bounded so a search costs the same on a large fleet:

- queue messages published under the reqid: the newest ``SCAN_PER_STATUS`` of each
  topic and status (the queue keeps no reqid index), one script call each;
- log lines that carry it: the last ``TAIL_BYTES`` of each ``*.log`` file under
  ``<dir>/<service>/`` for every directory of ``CANGHAI_LOG_DIRS`` (default: this
  process's ``BUTTERFLY_LOG_DIR``, where ``butterfly serve`` of every service on the host
  writes); a plain substring match in Python, no shell;
- flows started by it (xingqiao ``list_jobs?job_reqid=``), ruqi runs that carried it
  (the newest history rows) and the console's own audit entries.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, cast

from butterfly_common import db
from butterfly_common.mq import STATUSES

from . import queues, remote
from .models import Audit
from .remote import RemoteError

SCAN_PER_STATUS = 500
TAIL_BYTES = 4 * 1024 * 1024
MAX_LINES = 200
HISTORY_ROWS = 200


def messages(reqid: str) -> list[Any]:
    b = queues.broker()
    found = []
    for topic in b.topics():
        for status in STATUSES:
            _, msgs = b.list(topic, status, 1, SCAN_PER_STATUS, True)
            found += [m for m in msgs if m.reqid == reqid]
    return sorted(found, key=lambda m: m.created_at or 0)


def log_dirs(setting: str, default: str) -> list[Path]:
    parts = [p for p in (setting or default).split(os.pathsep) if p.strip() and p != "-"]
    return [Path(p.strip()) for p in parts]


_TRACE_ID = re.compile(r"\ttrace_id:([0-9a-f]{32})(?:\t|$)")


def trace_ids(lines: list[dict[str, str]]) -> list[str]:
    """The trace ids the lines name (an access line with tracing on ends in
    ``trace_id:<hex>\tspan_id:<hex>``), first seen first."""
    found: dict[str, None] = {}
    for line in lines:
        match = _TRACE_ID.search(line["line"])
        if match:
            found.setdefault(match[1])
    return list(found)


def log_lines(reqid: str, dirs: list[Path]) -> list[dict[str, str]]:
    out: list[dict[str, str]] = []
    needle = reqid.encode()
    for base in dirs:
        if not base.is_dir():
            continue
        for path in sorted(base.glob("*/*.log")):
            try:
                with path.open("rb") as f:
                    size = f.seek(0, os.SEEK_END)
                    f.seek(max(0, size - TAIL_BYTES))
                    chunk = f.read()
            except OSError:
                continue
            for line in chunk.splitlines():
                if needle in line:
                    out.append({"service": path.parent.name, "file": path.name,
                                "line": line.decode("utf-8", "replace")[:2000]})
                    if len(out) >= MAX_LINES:
                        return out
    return out


def flows(reqid: str, username: str) -> tuple[list[dict[str, Any]], str]:
    try:
        data = remote.data("xingqiao", "list_jobs", username=username, job_reqid=reqid,
                           page_size=50)
        return data["list"], ""
    except RemoteError as exc:
        return [], exc.reason or exc.stat


def runs(reqid: str, username: str) -> tuple[list[dict[str, Any]], str]:
    try:
        data = remote.data("ruqi", "get_history", username=username, page_index=1,
                           page_size=HISTORY_ROWS)
        return [h for h in data["list"] if h.get("reqid") == reqid], ""
    except RemoteError as exc:
        return [], exc.reason or exc.stat


def audit_entries(reqid: str) -> list[dict[str, Any]]:
    with db.database.connection_context():
        rows = Audit.select().where(Audit.reqid == reqid).order_by(Audit.id).dicts()
        return cast(list[dict[str, Any]], list(rows))
