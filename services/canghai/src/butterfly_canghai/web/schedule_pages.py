"""The Scheduler pages: ruqi's jobs and history over ruqi's HTTP API.

Viewers see jobs and history; operators pause (with a note), resume, run now, backfill,
add and edit; admins remove. ruqi checks the rule and the options itself (``check_rule``,
as you type); its refusal (``x-reason``) is shown beside the form.
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
OPTIONS = ("overlap", "pause_on_failure", "jitter", "catchup_window", "timeout",
           "misfire_grace_time", "timezone", "start_at", "end_at")
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
    blank = {"job_id": "", "job_name": "", "job_trigger": "interval", "rule": "", "cmd": "",
             **dict.fromkeys(OPTIONS, "")}
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


#: Slot times a backfill preview lists at each end of the range.
PREVIEW_EDGE = 5


def _preview(data: dict[str, Any]) -> dict[str, Any]:
    """The first and last ``PREVIEW_EDGE`` slot times of a dry run, each marked when a
    backfill already ran it (ruqi skips those)."""
    done = set(data.get("already_run_times") or [])
    times: list[str] = data.get("slot_times") or []
    tail: list[str] = []
    if len(times) <= 2 * PREVIEW_EDGE:
        head = times
    else:
        head, tail = times[:PREVIEW_EDGE], times[-PREVIEW_EDGE:]
    return {"head": [(t, t in done) for t in head], "tail": [(t, t in done) for t in tail],
            "hidden": len(times) - len(head) - len(tail)}


@bp.post("/backfill")
@needs("operator")
def backfill() -> Any:
    """Preview (ruqi's dry run: the slots, which already ran) or run a backfill of a past
    range. A refusal (a range in the future, more than 10,000 slots) is shown in the form:
    a 200 for the page's htmx request, a 400 otherwise."""
    job_id = (request.form.get("job_id") or "").strip()
    start = (request.form.get("start") or "").strip()[:40]
    end = (request.form.get("end") or "").strip()[:40]
    overlap = (request.form.get("overlap") or "").strip() or None
    mode = request.form.get("mode") or "preview"
    if mode not in ("preview", "run"):
        abort(400, "mode must be preview or run")
    if overlap is not None and overlap not in OVERLAPS:
        abort(400, "unknown overlap policy")
    try:
        data = scheduler.call("backfill_job", username=_user(), job_id=job_id, start=start,
                              end=end, overlap=overlap, dry_run=mode == "preview")
    except RuqiError as exc:
        if mode == "run":
            log("job_backfill", job_id, f"{start}..{end}: {exc.reason}", ok=False)
        status = 200 if request.headers.get("HX-Request") else 400
        return page("_backfill.html", error=exc.reason or exc.stat, data=None), status
    if mode == "run":
        log("job_backfill", job_id, f"{data['start']}..{data['end']} overlap={data['overlap']}"
            f" slots={data['slots']} queued={data['to_run']}")
    return page("_backfill.html", error="", data=data,
                preview=_preview(data) if mode == "preview" else None)


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
    """The rule as ruqi reads it and its next five fire times (the form asks as you type),
    with the form's options checked by ruqi as add_job would (bounds and jitter applied to
    the times); ruqi's refusal is shown as it is, without saving anything."""
    trigger = request.args.get("job_trigger") or ""
    rule = (request.args.get("rule") or "")[:200]
    if trigger not in TRIGGERS:
        abort(400, "unknown trigger")
    if not rule.strip():
        return page("_rule_check.html", ok=False, error="", fires=[])
    opts = {k: v[:64] for k in OPTIONS if (v := (request.args.get(k) or "").strip())}
    job_id = (request.args.get("job_id") or "").strip()[:64] or None
    try:
        data = scheduler.call("check_rule", username=_user(), job_trigger=trigger,
                              rule=rule, count=5, job_id=job_id, **opts)
    except RuqiError as exc:
        return page("_rule_check.html", ok=False, error=exc.reason or exc.stat, fires=[])
    return page("_rule_check.html", ok=True, error="", fires=data["next_fire_times"],
                jittered=data.get("jittered", False), checked_options=bool(opts),
                new=request.args.get("new") != "0")


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
    split by outcome so a failure stands out. A backfill's runs are left out: they start
    late on purpose."""
    job_id = request.args.get("id") or None
    try:
        data = scheduler.history(job_id, 1, 200, username=_user())
    except RuqiError as exc:
        abort(502, exc.reason or exc.stat)
    points = []
    for h in data["list"]:
        if str(h.get("cmd_output") or "").startswith("[backfill]"):
            continue
        at, started = _epoch(h.get("scheduled_time")), _epoch(h.get("start_time"))
        if at is not None and started is not None:
            points.append((at, round(max(0.0, started - at), 3), bool(h.get("cmd_is_success"))))
    points.sort()
    return jsonify({"t": [p[0] for p in points],
                    "late_ok": [p[1] if p[2] else None for p in points],
                    "late_failed": [None if p[2] else p[1] for p in points]})
