"""The batches pages: every batch newest first with its progress, one batch's record and
callbacks, and the operator's cancel (the queue's ``mq/batch.py``)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, redirect, request

from butterfly_common.mq.batch import BatchNotFound, check_batch_id

from .. import queues
from .common import int_arg, log, needs, page

bp = Blueprint("batches", __name__, url_prefix="/console")
PAGE = 50


def _batch_id(value: str | None) -> str:
    try:
        return check_batch_id(value or "")
    except ValueError:
        abort(400, "bad batch id")


@bp.get("/batches")
@needs("viewer")
def batches() -> Any:
    page_index = int_arg("page", 1, 1, 10**6)
    total, rows = queues.broker().batches(page_index, PAGE)
    return page("batches.html", active="batches", rows=rows, total=total,
                page_index=page_index, pages=max(1, (total + PAGE - 1) // PAGE))


@bp.get("/batch")
@needs("viewer")
def batch() -> Any:
    """One batch, as read (no repair: a page view writes nothing; baichuan's
    maintenance pass and its ``batch`` route reconcile)."""
    try:
        b = queues.broker().get_batch(_batch_id(request.args.get("id")), repair=False)
    except BatchNotFound:
        return page("error.html", message="not_found"), 404
    return page("batch.html", active="batches", b=b)


@bp.post("/batch/cancel")
@needs("operator")
def cancel() -> Any:
    batch_id = _batch_id(request.form.get("id"))
    try:
        b = queues.broker().cancel_batch(batch_id)
    except BatchNotFound:
        abort(404)
    log("batch_cancel", batch_id, ok=b.state == "canceled")
    return redirect(f"/console/batch?id={batch_id}")
