"""Trace a request: everything the fleet recorded under one ``x-reqid`` (see search.py)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, g, request

from butterfly_common.reqid import is_valid_reqid
from butterfly_common.runtime import get_config, get_settings

from .. import search
from ..config import CanghaiConfig
from .common import needs, page

bp = Blueprint("search", __name__, url_prefix="/console/search")


@bp.get("")
@needs("viewer")
def search_page() -> Any:
    reqid = (request.args.get("reqid") or "").strip().upper()[:64]
    if not reqid:
        return page("search.html", active="search", reqid="", searched=False, error="")
    if not is_valid_reqid(reqid):
        return page("search.html", active="search", reqid=reqid, searched=False,
                    error="bad_reqid"), 400
    user = g.user.username
    dirs = search.log_dirs(get_config(CanghaiConfig).log_dirs, str(get_settings().log_dir))
    flows, flows_error = search.flows(reqid, user)
    runs, runs_error = search.runs(reqid, user)
    lines = search.log_lines(reqid, dirs)
    template = get_config(CanghaiConfig).trace_url  # CANGHAI_TRACE_URL, checked at start
    traces = [(tid, template.replace("{trace_id}", tid) if template else "")
              for tid in search.trace_ids(lines)]
    return page("search.html", active="search", reqid=reqid, searched=True, error="",
                messages=search.messages(reqid), lines=lines, traces=traces,
                flows=flows, flows_error=flows_error, runs=runs, runs_error=runs_error,
                audit=search.audit_entries(reqid), dirs=dirs,
                scan=search.SCAN_PER_STATUS)
