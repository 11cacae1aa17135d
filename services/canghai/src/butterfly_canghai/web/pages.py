"""Read-only pages: overview, queues, messages, one message, consumers, audit log.

Lists that change by the second (fleet state, queue counts, consumers) are also served as
fragments (``.../rows``) that the page re-fetches with htmx polling, so counts move
without a reload.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, abort, jsonify, redirect, request

from butterfly_common.mq import STATUSES, Message
from butterfly_common.mq.bulk import ACTIONS as BULK_ACTIONS
from butterfly_common.reqid import is_valid_reqid
from butterfly_common.runtime import get_config, get_redis

from .. import audit, fleet, queues, sampler, users
from ..config import CanghaiConfig
from .common import int_arg, needs, page, safe_next

bp = Blueprint("console", __name__, url_prefix="/console", static_folder="../static",
               static_url_path="/static", template_folder="../templates")


@bp.get("/lang/<code>")
def switch_lang(code: str) -> Any:
    if code not in ("zh", "en"):
        abort(404)
    response = redirect(safe_next(request.args.get("next")))
    response.set_cookie("canghai_lang", code, max_age=365 * 86400, samesite="Lax",
                        httponly=True, secure=get_config(CanghaiConfig).cookie_secure)
    return response


# -- overview -------------------------------------------------------------------------------

def _overview_data() -> dict[str, Any]:
    rows = queues.topic_counts()
    workers = queues.workers()
    return {"fleet": fleet.probe_all(get_config(CanghaiConfig)), "totals": queues.totals(rows),
            "alive": queues.consumers_alive(workers), "workers": len(workers),
            "topics": len(rows)}


@bp.get("/")
@needs("viewer")
def overview() -> Any:
    return page("overview.html", active="overview", **_overview_data())


@bp.get("/overview/rows")
@needs("viewer")
def overview_rows() -> Any:
    return page("_overview_rows.html", **_overview_data())


@bp.get("/series.json")
@needs("viewer")
def series() -> Any:
    hours = 24.0 if request.args.get("range") == "day" else 1.0
    return jsonify(sampler.read_series(get_redis(), hours))


# -- queues ---------------------------------------------------------------------------------

SORTS = ("topic", *STATUSES, "consumers")


def _queue_rows() -> dict[str, Any]:
    """Counts of every topic, filtered by ``q`` (substring) and sorted by ``sort``
    (a column; ``desc=1`` for largest first). The polling URL keeps both."""
    rows = queues.topic_counts()
    q = (request.args.get("q") or "").strip()
    asked = request.args.get("sort") or "topic"
    sort = asked if asked in SORTS else "topic"
    desc = request.args.get("desc") == "1"
    shown = [r for r in rows if q.lower() in r.topic.lower()] if q else rows
    if sort == "topic":
        shown = sorted(shown, key=lambda r: r.topic, reverse=desc)
    elif sort == "consumers":
        shown = sorted(shown, key=lambda r: (r.consumers, r.topic), reverse=desc)
    else:
        shown = sorted(shown, key=lambda r: (r.counts[sort], r.topic), reverse=desc)
    query = urlencode({"q": q, "sort": sort, "desc": "1" if desc else "0"})
    return {"rows": shown, "statuses": STATUSES, "totals": queues.totals(rows), "q": q,
            "sort": sort, "desc": desc, "query": query, "sorts": SORTS}


@bp.get("/queues")
@needs("viewer")
def queue_page() -> Any:
    return page("queues.html", active="queues", **_queue_rows())


@bp.get("/queues/rows")
@needs("viewer")
def queue_rows() -> Any:
    return page("_queue_rows.html", **_queue_rows())


# -- messages -------------------------------------------------------------------------------

def _messages_context(args: Any = None) -> dict[str, Any]:
    """The messages page's data for ``args`` (the query string unless given)."""
    args = request.args if args is None else args
    topics = queues.broker().topics()
    topic = args.get("topic") or (topics[0] if topics else "")
    status = args.get("status") or "queued"
    if status not in STATUSES:
        abort(400, "unknown status")
    # "priority": the queued messages in claim order, highest priority first (the order
    # the queue keeps them in); the other statuses are kept by time, not by priority
    order = args.get("order")
    if order not in ("oldest", "priority") or (order == "priority" and status != "queued"):
        order = "newest"
    page_index = int_arg("page", 1, 1, 10**9)
    page_size = int_arg("size", 20, 1, 200)
    total, counts = 0, {}
    msgs: list[Message] = []
    if topic:
        try:
            total, msgs = queues.list_messages(topic, status, page_index, page_size,
                                               order == "newest")
            counts = queues.broker().counts(topic)
        except ValueError:
            abort(400, "bad topic")
    return {"topics": topics, "topic": topic, "status": status, "order": order,
            "page_index": page_index, "page_size": page_size, "total": total, "msgs": msgs,
            "counts": counts, "statuses": STATUSES,
            "pages": max(1, (total + page_size - 1) // page_size)}


#: what an action that came back to the messages page may say it did
DONE = ("limits_saved", "limits_cleared")


def messages_page(args: Any = None, not_found: str = "", limits_form: Any = None,
                  limits_error: str = "", bulk_form: Any = None, bulk_error: str = "",
                  bulk_result: dict[str, Any] | None = None) -> str:
    """The messages page with its topic's limits panel (one more script call, here only:
    the polled fragments and the queues list do without). ``limits_form`` refills the
    limits form after a refused change, ``limits_error`` says why; ``bulk_form``,
    ``bulk_error`` and ``bulk_result`` do the same for the bulk-action form."""
    ctx = _messages_context(args)
    limits = queues.broker().limits(ctx["topic"]) if ctx["topic"] else None
    done = request.args.get("done", "")
    return page("messages.html", active="messages", not_found=not_found, limits=limits,
                limits_form=limits_form, limits_error=limits_error, bulk_form=bulk_form,
                bulk_error=bulk_error, bulk_result=bulk_result, bulk_actions=BULK_ACTIONS,
                done=done if done in DONE else "", **ctx)


@bp.get("/messages")
@needs("viewer")
def messages() -> Any:
    msg_id = (request.args.get("id") or "").strip()
    if msg_id:
        found = queues.get_message(msg_id)
        if found is not None:
            return redirect(f"/console/message?id={found.id}")
        if is_valid_reqid(msg_id.upper()):  # a request id: follow it across the fleet
            return redirect("/console/search?" + urlencode({"reqid": msg_id.upper()}))
        return messages_page(not_found=msg_id), 404
    return messages_page()


@bp.get("/messages/rows")
@needs("viewer")
def message_rows() -> Any:
    return page("_message_rows.html", **_messages_context())


@bp.get("/messages/counts")
@needs("viewer")
def message_counts() -> Any:
    """The status counts strip of the messages page (polled)."""
    topic = request.args.get("topic") or ""
    try:
        counts = queues.broker().counts(topic)
    except ValueError:
        abort(400, "bad topic")
    return page("_message_counts.html", topic=topic, counts=counts, statuses=STATUSES,
                status=request.args.get("status") or "")


@bp.get("/message")
@needs("viewer")
def message() -> Any:
    msg = queues.get_message((request.args.get("id") or "").strip())
    if msg is None:
        return page("error.html", message="not_found"), 404
    return page("message.html", active="messages", m=msg, now=time.time())


# -- consumers ------------------------------------------------------------------------------

def _consumer_rows() -> dict[str, Any]:
    now = time.time()
    rows = sorted(queues.workers(), key=lambda w: (not w.get("alive"), w["id"]))
    return {"rows": rows, "now": now}


@bp.get("/consumers")
@needs("viewer")
def consumers() -> Any:
    return page("consumers.html", active="consumers", **_consumer_rows())


@bp.get("/consumers/rows")
@needs("viewer")
def consumer_rows() -> Any:
    return page("_consumer_rows.html", **_consumer_rows())


# -- audit and users ------------------------------------------------------------------------

@bp.get("/audit")
@needs("operator")
def audit_page() -> Any:
    page_index = int_arg("page", 1, 1, 10**9)
    total, rows = audit.recent(page_index, 50, request.args.get("user") or None,
                               request.args.get("action") or None)
    return page("audit.html", active="audit", rows=rows, total=total, page_index=page_index,
                pages=max(1, (total + 49) // 50))


@bp.get("/users")
@needs("admin")
def users_page() -> Any:
    return page("users.html", active="users", rows=users.list_users(), error="")
