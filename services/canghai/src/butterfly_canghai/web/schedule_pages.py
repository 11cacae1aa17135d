"""The Scheduler pages: ruqi's jobs and history over ruqi's HTTP API.

Viewers see jobs and history; operators pause, resume, run now, add and edit; admins
remove. ruqi checks the rule itself; its refusal (``x-reason``) is shown beside the form.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, abort, g, jsonify, redirect, request

from .. import scheduler
from ..scheduler import RuqiError
from .common import int_arg, log, needs, page

bp = Blueprint("schedule", __name__, url_prefix="/console/scheduler")
TRIGGERS = ("cron", "interval", "date")
ACTIONS = {"pause": ("pause_job", "operator"), "resume": ("resume_job", "operator"),
           "run": ("run_job", "operator"), "remove": ("remove_job", "admin")}
FIELDS = ("job_id", "job_name", "job_trigger", "rule", "cmd")
#: Optional job settings the form offers; an empty field means "none" (bounds) or the
#: default / unchanged (numbers).
OPTIONS = ("overlap", "pause_on_failure", "jitter", "start_at", "end_at")
#: ruqi's overlap policies (``forbid`` is shown as it is stored, ``skip``'s old name)
OVERLAPS = ("allow", "skip", "buffer_one", "buffer_all", "cancel_other", "forbid")
BOUNDS = ("start_at", "end_at")


def _options(form: dict[str, str], new_job: bool) -> dict[str, str | None]:
    """The optional settings to send: an empty bound clears it on an edit."""
    out: dict[str, str | None] = {}
    for name in OPTIONS:
        value = form.get(name, "")
        if value:
            out[name] = value
        elif name in BOUNDS and not new_job:
            out[name] = ""
    return out


def _user() -> str:
    return g.user.username


@bp.get("/")
@needs("viewer")
def jobs() -> Any:
    error, data = "", {"total": 0, "list": []}
    try:
        data = scheduler.jobs(int_arg("page", 1, 1, 10**6), 50, username=_user())
    except RuqiError as exc:
        error = exc.reason or exc.stat
    return page("scheduler.html", active="scheduler", jobs=data["list"], total=data["total"],
                error=error)


@bp.get("/job")
@needs("viewer")
def job() -> Any:
    job_id = request.args.get("id") or ""
    try:
        found = scheduler.job(job_id, username=_user())
    except RuqiError as exc:
        if exc.stat == "ERR_JOB_NOT_FOUND":
            abort(404)
        return page("error.html", message="ruqi_down", detail=exc.reason), 502
    return page("job.html", active="scheduler", job=found, form=found, error="",
                triggers=TRIGGERS, new=False, overlaps=OVERLAPS)


@bp.get("/new")
@needs("operator")
def new() -> Any:
    blank = {"job_id": "", "job_name": "", "job_trigger": "interval", "rule": "",
             "cmd": "", "overlap": "", "pause_on_failure": "", "jitter": "", "start_at": "",
             "end_at": ""}
    return page("job.html", active="scheduler", job=None, form=blank, error="",
                triggers=TRIGGERS, new=True, overlaps=OVERLAPS)


@bp.post("/save")
@needs("operator")
def save() -> Any:
    form = {k: (request.form.get(k) or "").strip() for k in FIELDS + OPTIONS}
    new_job = request.form.get("new") == "1"
    if form["job_trigger"] not in TRIGGERS:
        abort(400, "unknown trigger")
    try:
        scheduler.call("add_job" if new_job else "modify_job", username=_user(),
                       **{k: form[k] for k in FIELDS}, **_options(form, new_job))
    except RuqiError as exc:
        log("job_add" if new_job else "job_modify", form["job_id"], exc.reason, ok=False)
        return page("job.html", active="scheduler", job=None if new_job else form, form=form,
                    error=exc.reason or exc.stat, triggers=TRIGGERS, new=new_job,
                    overlaps=OVERLAPS), 400
    log("job_add" if new_job else "job_modify", form["job_id"],
        f"{form['job_trigger']} {form['rule']}")
    return redirect("/console/scheduler/job?" + urlencode({"id": form["job_id"]}))


@bp.post("/action")
@needs("operator")
def action() -> Any:
    job_id = request.form.get("job_id") or ""
    name = request.form.get("action") or ""
    if name not in ACTIONS:
        abort(400, "unknown action")
    path, role = ACTIONS[name]
    if not g.user.can(role):
        log("forbidden", f"job {name}", job_id, ok=False)
        abort(403, f"needs role {role}")
    extra = {}
    if name == "pause":  # why: stored with the job, with who and when (ruqi)
        extra["note"] = (request.form.get("note") or "").strip()[:500] or None
    try:
        scheduler.call(path, username=_user(), job_id=job_id, **extra)
    except RuqiError as exc:
        log(f"job_{name}", job_id, exc.reason, ok=False)
        abort(400, exc.reason or exc.stat)
    log(f"job_{name}", job_id)
    if name == "remove":
        return redirect("/console/scheduler/")
    return redirect("/console/scheduler/job?" + urlencode({"id": job_id}))


@bp.get("/history")
@needs("viewer")
def history() -> Any:
    job_id = request.args.get("id") or None
    try:
        data = scheduler.history(job_id, 1, 30, username=_user())
    except RuqiError as exc:
        return page("_history_rows.html", rows=[], total=0, error=exc.reason)
    return page("_history_rows.html", rows=data["list"], total=data["total"], error="")


@bp.get("/check")
@needs("operator")
def check() -> Any:
    """The rule as ruqi reads it and its next five fire times (the form asks as you type);
    ruqi's refusal is shown as it is, without saving anything."""
    trigger = request.args.get("job_trigger") or ""
    rule = (request.args.get("rule") or "")[:200]
    if trigger not in TRIGGERS:
        abort(400, "unknown trigger")
    if not rule.strip():
        return page("_rule_check.html", ok=False, error="", fires=[])
    try:
        data = scheduler.call("check_rule", username=_user(), job_trigger=trigger,
                              rule=rule, count=5)
    except RuqiError as exc:
        return page("_rule_check.html", ok=False, error=exc.reason or exc.stat, fires=[])
    return page("_rule_check.html", ok=True, error="", fires=data["next_fire_times"])


def _epoch(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return dt.datetime.strptime(text[:23], "%Y-%m-%d %H:%M:%S.%f").timestamp()
    except ValueError:
        return None


@bp.get("/lateness.json")
@needs("viewer")
def lateness() -> Any:
    """The job's last runs for the chart: scheduled time, and how late each started (s),
    split by outcome so a failure stands out."""
    job_id = request.args.get("id") or None
    try:
        data = scheduler.history(job_id, 1, 200, username=_user())
    except RuqiError as exc:
        abort(502, exc.reason or exc.stat)
    points = []
    for h in data["list"]:
        at, started = _epoch(h.get("scheduled_time")), _epoch(h.get("start_time"))
        if at is not None and started is not None:
            points.append((at, round(max(0.0, started - at), 3), bool(h.get("cmd_is_success"))))
    points.sort()
    return jsonify({"t": [p[0] for p in points],
                    "late_ok": [p[1] if p[2] else None for p in points],
                    "late_failed": [None if p[2] else p[1] for p in points]})
