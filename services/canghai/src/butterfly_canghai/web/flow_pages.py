"""The Flows pages: xingqiao's flows over its HTTP API.

A list with filters and paging; a flow's page with its graph (xingqiao's Graphviz SVG,
proxied and shown as an ``<img>``, so nothing in it can run), its tasks with params,
results and errors, refreshed every two seconds while it runs. Operators create flows,
retry a failed flow, rerun a task and cancel a running flow; admins delete one. Every
action is audited.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, Response, abort, g, redirect, request

from .. import remote
from ..remote import RemoteError
from .common import int_arg, log, needs, page
from .remote_views import envelope, fetch, refusal_page

bp = Blueprint("flows", __name__, url_prefix="/console/flows")
PAGE = 20
JOB_STATES = ("started", "finished", "failed", "canceled", "timed_out")
ACTIONS = {"retry": ("retry_job", "operator"), "cancel": ("cancel_job", "operator"),
           "delete": ("delete_job", "admin")}
ENDED = ("finished", "failed", "canceled", "timed_out")


def _arg(name: str, limit: int = 64) -> str:
    value = (request.args.get(name) or "").strip()
    if len(value) > limit:
        abort(400, f"{name} longer than {limit} characters")
    return value


@bp.get("/")
@needs("viewer")
def flows() -> Any:
    filters = {"job_status": _arg("status"), "job_type": _arg("type"),
               "job_namespace": _arg("namespace")}
    if filters["job_status"] and filters["job_status"] not in JOB_STATES:
        abort(400, "unknown status")
    page_index = int_arg("page", 1, 1, 10**6)
    try:
        listed = fetch("xingqiao", "list_jobs", page_index=page_index, page_size=PAGE,
                       orderBy="job_id", orderDir="desc",
                       **{k: v for k, v in filters.items() if v})
    except RemoteError as exc:
        return refusal_page("xingqiao", exc)
    query = urlencode({"status": filters["job_status"], "type": filters["job_type"],
                       "namespace": filters["job_namespace"]})
    return page("flows.html", active="flows", rows=listed["list"], total=listed["total"],
                filters=filters, states=JOB_STATES, page_index=page_index, query=query,
                pages=max(1, (listed["total"] + PAGE - 1) // PAGE))


@bp.get("/new")
@needs("operator")
def new() -> Any:
    return _new_form({"job_namespace": "console", "job_type": "", "job_extra": "{}"}, "")


def _new_form(form: dict[str, str], error: str) -> Any:
    try:
        types = fetch("xingqiao", "flow_type_list")["list"]
    except RemoteError as exc:
        return refusal_page("xingqiao", exc)
    return page("flow_new.html", active="flows", form=form, types=types, error=error)


@bp.post("/create")
@needs("operator")
def create() -> Any:
    form = {k: (request.form.get(k) or "").strip()
            for k in ("job_namespace", "job_type", "job_extra")}
    if not form["job_namespace"] or not form["job_type"] or len(form["job_extra"]) > 100_000:
        abort(400, "job_namespace and job_type are required")
    try:
        extra = json.loads(form["job_extra"] or "{}")
    except ValueError:
        return _new_form(form, "job_extra: not JSON"), 400
    if not isinstance(extra, dict):
        return _new_form(form, "job_extra: a JSON object is needed"), 400
    try:
        done = envelope("xingqiao", "create_job", job_namespace=form["job_namespace"][:64],
                        job_type=form["job_type"][:64], job_extra=extra)
    except RemoteError as exc:
        log("flow_create", form["job_type"], f"{exc.stat}: {exc.reason}", ok=False)
        if exc.unreachable:
            return refusal_page("xingqiao", exc)
        return _new_form(form, f"{exc.stat}: {exc.reason}"), 400
    job_id = done["data"]["job_id"]
    log("flow_create", f"flow {job_id}", f"{form['job_type']} {form['job_namespace']}")
    return redirect(f"/console/flows/flow?id={job_id}")


def _job_id(source: Any) -> int:
    try:
        job_id = int(source.get("id") or source.get("job_id") or "")
    except ValueError:
        abort(400, "id must be an integer")
    if not 0 < job_id < 2**62:
        abort(400, "id out of range")
    return job_id


def _flow(job_id: int) -> dict[str, Any]:
    job = fetch("xingqiao", "get_job_detail", job_id=job_id)
    tasks = fetch("xingqiao", "get_tasklist_by_jobid", job_id=job_id)["list"]
    counts = job.get("task_status") or {}
    version = ".".join(f"{k}{v}" for k, v in sorted(counts.items()))
    return {"job": job, "tasks": tasks, "graph_version": f"{job['job_status']}-{version}",
            "ended": job["job_status"] in ENDED, "job_id": job_id}


@bp.get("/flow")
@needs("viewer")
def flow() -> Any:
    job_id = _job_id(request.args)
    try:
        found = _flow(job_id)
    except RemoteError as exc:
        return refusal_page("xingqiao", exc)
    return page("flow.html", active="flows", error=request.args.get("error", ""), **found)


@bp.get("/flow/live")
@needs("viewer")
def flow_live() -> Any:
    job_id = _job_id(request.args)
    try:
        found = _flow(job_id)
    except RemoteError as exc:
        return refusal_page("xingqiao", exc)
    return page("_flow_live.html", **found)


@bp.get("/flow/graph.svg")
@needs("viewer")
def graph() -> Any:
    """xingqiao's SVG, served from this origin for ``<img>`` (an image never runs code)."""
    job_id = _job_id(request.args)
    try:
        answer = remote.get_raw("xingqiao", "get_graph", job_id=job_id)
    except RemoteError as exc:
        abort(502, exc.reason)
    if answer.status_code != 200 or "svg" not in answer.headers.get("Content-Type", ""):
        abort(502 if answer.status_code >= 500 else 404,
              answer.headers.get("x-reason", f"xingqiao: HTTP {answer.status_code}"))
    response = Response(answer.content, mimetype="image/svg+xml")
    response.headers["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'"
    response.headers["Cache-Control"] = "private, max-age=60"
    return response


@bp.post("/action")
@needs("operator")
def action() -> Any:
    job_id = _job_id(request.form)
    name = request.form.get("action") or ""
    if name not in ACTIONS:
        abort(400, "unknown action")
    path, role = ACTIONS[name]
    if not g.user.can(role):
        log("forbidden", f"flow {name}", str(job_id), ok=False)
        abort(403, f"needs role {role}")
    try:
        envelope("xingqiao", path, job_id=job_id)
    except RemoteError as exc:
        log(f"flow_{name}", f"flow {job_id}", f"{exc.stat}: {exc.reason}", ok=False)
        if exc.unreachable:
            return refusal_page("xingqiao", exc)
        return redirect(f"/console/flows/flow?id={job_id}&"
                        + urlencode({"error": f"{exc.stat}: {exc.reason}"}))
    log(f"flow_{name}", f"flow {job_id}")
    if name == "delete":
        return redirect("/console/flows/")
    return redirect(f"/console/flows/flow?id={job_id}")


@bp.get("/waiting")
@needs("viewer")
def waiting() -> Any:
    """"Waiting for you": approval tasks of running flows; operators decide here."""
    try:
        listed = fetch("xingqiao", "list_approvals", page_size=200)
    except RemoteError as exc:
        return refusal_page("xingqiao", exc)
    return page("flow_waiting.html", active="flows", rows=listed["list"],
                total=listed["total"], error=request.args.get("error", ""))


DECISIONS = ("approve", "reject")


@bp.post("/decide")
@needs("operator")
def decide() -> Any:
    """Approve or reject an approval task, with a comment: its signal, sent as the
    signed-in user, carries ``{"approved", "comment", "by"}`` (the task's result)."""
    job_id = _job_id(request.form)
    name = (request.form.get("signal") or "").strip()
    decision = request.form.get("decision") or ""
    if decision not in DECISIONS or not 0 < len(name) <= 64:
        abort(400, "decision (approve or reject) and signal are required")
    comment = (request.form.get("comment") or "").strip()
    if len(comment) > 2000:
        abort(400, "comment longer than 2000 characters")
    payload = {"approved": decision == "approve", "comment": comment,
               "by": g.user.username}
    target = f"flow {job_id} {name}"
    try:
        envelope("xingqiao", "send_signal", job_id=job_id, name=name, payload=payload)
    except RemoteError as exc:
        log(f"flow_{decision}", target, f"{exc.stat}: {exc.reason}", ok=False)
        if exc.unreachable:
            return refusal_page("xingqiao", exc)
        return redirect("/console/flows/waiting?"
                        + urlencode({"error": f"{exc.stat}: {exc.reason}"}))
    log(f"flow_{decision}", target, comment[:200])
    return redirect("/console/flows/waiting")


@bp.post("/rerun")
@needs("operator")
def rerun() -> Any:
    """Run one task (and its downstream) again, optionally with new params."""
    job_id = _job_id(request.form)
    try:
        task_id = int(request.form.get("task_id") or "")
    except ValueError:
        abort(400, "task_id must be an integer")
    if not 0 < task_id < 2**62:
        abort(400, "task_id out of range")
    text = (request.form.get("params") or "").strip()
    params = None
    if text:
        try:
            params = json.loads(text[:100_000])
        except ValueError:
            params = None
        if not isinstance(params, dict):
            return redirect(f"/console/flows/flow?id={job_id}&"
                            + urlencode({"error": "params: a JSON object is needed"}))
    try:
        envelope("xingqiao", "rerun_task", task_id=task_id, params=params)
    except RemoteError as exc:
        log("flow_rerun_task", f"task {task_id}", f"{exc.stat}: {exc.reason}", ok=False)
        if exc.unreachable:
            return refusal_page("xingqiao", exc)
        return redirect(f"/console/flows/flow?id={job_id}&"
                        + urlencode({"error": f"{exc.stat}: {exc.reason}"}))
    log("flow_rerun_task", f"task {task_id}", f"flow {job_id}")
    return redirect(f"/console/flows/flow?id={job_id}")
