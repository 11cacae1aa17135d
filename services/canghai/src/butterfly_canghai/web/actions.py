"""State-changing console actions on messages and users (POST + CSRF, role checked here).

operator: requeue one / selected / all failed. admin: delete selected, purge a status,
set or clear a topic's rate and concurrency limits, manage users. Every action lands in
the audit log with the page's reqid.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, abort, g, jsonify, redirect, request

from butterfly_common.runtime import get_config

from .. import bulk_form, limits_form, queues, users
from ..config import CanghaiConfig
from .common import log, needs, page, safe_next
from .i18n import translate
from .pages import messages_page

bp = Blueprint("actions", __name__, url_prefix="/console")


def _back(default: str = "/console/messages") -> Any:
    return redirect(safe_next(request.form.get("next"), default))


def _topic() -> str:
    topic = request.form.get("topic") or ""
    try:
        queues.broker().keys(topic)
    except ValueError:
        abort(400, "bad topic")
    return topic


@bp.post("/message/requeue")
@needs("operator")
def requeue_one() -> Any:
    msg = queues.get_message(request.form.get("id") or "")
    if msg is None:
        abort(404)
    ok = queues.broker().requeue(msg.topic, msg.id)
    log("requeue", f"{msg.topic} {msg.id}", ok=ok)
    return redirect(f"/console/message?id={msg.id}")


@bp.post("/message/delete")
@needs("admin")
def delete_one() -> Any:
    msg = queues.get_message(request.form.get("id") or "")
    if msg is None:
        abort(404)
    queues.broker().delete(msg.topic, msg.id)
    log("delete", f"{msg.topic} {msg.id}")
    return redirect("/console/messages?" + urlencode({"topic": msg.topic,
                                                      "status": msg.status}))


@bp.post("/messages/selected")
@needs("operator")
def selected() -> Any:
    """Requeue (operator) or delete (admin) the ticked messages of one topic."""
    topic = _topic()
    ids = [i for i in request.form.getlist("ids") if i][:1000]
    action = request.form.get("action")
    b = queues.broker()
    if action == "requeue":
        n = sum(1 for i in ids if b.requeue(topic, i))
    elif action == "delete":
        if not g.user.can("admin"):
            log("forbidden", request.path, "delete_selected needs admin", ok=False)
            abort(403, "needs role admin")
        n = sum(1 for i in ids if b.delete(topic, i))
    else:
        abort(400, "unknown action")
    log(f"{action}_selected", topic, f"ids={len(ids)} done={n}")
    return _back()


@bp.post("/messages/requeue_all")
@needs("operator")
def requeue_all() -> Any:
    topic = _topic()
    n = queues.broker().requeue_all(topic)
    log("requeue_all", topic, f"requeued={n}")
    return _back()


@bp.get("/messages/purge")
@needs("admin")
def purge_confirm() -> Any:
    topic = request.args.get("topic") or ""
    status = request.args.get("status") or "failed"
    try:
        n = queues.broker().counts(topic)[status]
    except (ValueError, KeyError):
        abort(400, "bad topic or status")
    return page("purge.html", active="messages", topic=topic, status=status, n=n)


@bp.post("/messages/purge")
@needs("admin")
def purge() -> Any:
    topic = _topic()
    status = request.form.get("status") or ""
    if status not in queues.STATUSES:
        abort(400, "bad status")
    n = queues.broker().purge(topic, status)
    log("purge", f"{topic} {status}", f"deleted={n}")
    return redirect("/console/messages?" + urlencode({"topic": topic, "status": status}))


@bp.post("/messages/limits")
@needs("admin")
def set_limits() -> Any:
    """Set (``action=set``; every field empty turns the limits off) or clear
    (``action=clear``) a topic's limits, then back to its page saying so. Bad values: the
    page again with the typed values and why, as a 400 (audited as refused)."""
    topic = _topic()
    status = request.form.get("status") or "queued"
    if status not in queues.STATUSES:
        status = "queued"
    action = request.form.get("action") or "set"
    b = queues.broker()
    user = g.user.username
    if action == "clear":
        b.clear_limits(topic, set_by=user)
        log("limits_clear", topic)
        done = "limits_cleared"
    elif action == "set":
        try:
            wanted = limits_form.parse(request.form)
        except limits_form.LimitsInputError as exc:
            why = exc.say(translate, g.get("lang") or "en")
            g.reason = exc.say(translate, "en")  # x-reason, as every refusal says why
            log("limits_set", topic, g.reason, ok=False)
            return messages_page({"topic": topic, "status": status}, limits_form=request.form,
                                 limits_error=why), 400
        now = b.set_limits(topic, wanted.max_running, wanted.rate, wanted.rate_window,
                           set_by=user, group_max_running=wanted.group_max_running,
                           group_limits=wanted.group_limits)
        if now.limited:
            log("limits_set", topic, wanted.detail())
            done = "limits_saved"
        else:  # every field empty: no limit left, as the clear button does
            log("limits_clear", topic)
            done = "limits_cleared"
    else:
        abort(400, "unknown action")
    return redirect("/console/messages?" + urlencode({"topic": topic, "status": status,
                                                      "done": done}))


@bp.post("/messages/bulk")
@needs("operator")
def bulk() -> Any:
    """The bulk-action form: ``do=preview`` counts the matches (operator, as baichuan's
    dry run), ``do=act`` acts on them (admin, checked here before the broker is touched;
    audited with the filter and the counts). Bad input or a refusal: the page again with
    the typed values and why, as a 400."""
    topic = _topic()
    status = request.form.get("status") or "failed"
    if status not in queues.STATUSES:
        status = "failed"
    act = request.form.get("do") == "act"
    if act and not g.user.can("admin"):
        log("forbidden", request.path, "bulk action needs admin", ok=False)
        abort(403, "needs role admin")

    def again(**shown: Any) -> Any:
        return messages_page({"topic": topic, "status": status}, bulk_form=request.form,
                             **shown)

    try:
        wanted = bulk_form.parse(request.form)
        counts = queues.broker().bulk(topic, wanted.action, wanted.status,
                                      error=wanted.error, since=wanted.since,
                                      until=wanted.until, stat=wanted.stat, dry_run=not act,
                                      step=get_config(CanghaiConfig).bulk_step)
    except bulk_form.BulkInputError as exc:
        g.reason = exc.say(translate, "en")
        if act:
            log("bulk", topic, g.reason, ok=False)
        return again(bulk_error=exc.say(translate, g.get("lang") or "en")), 400
    except ValueError as exc:  # the broker's refusal (a race with a changed rule)
        g.reason = f"Bulk action refused: {exc}"
        if act:
            log("bulk", topic, f"{wanted.action} {wanted.detail()}: {g.reason}", ok=False)
        return again(bulk_error=translate(g.get("lang") or "en", "bulk_refused",
                                          why=str(exc))), 400
    result = {"dry_run": not act, "action": wanted.action, **counts.to_dict()}
    if act:
        log("bulk", topic,
            f"{wanted.action} {wanted.detail()} matched={counts.matched} acted={counts.acted} "
            f"scanned={counts.scanned} steps={counts.steps}")
    return again(bulk_result=result)


@bp.post("/messages/bulk/part")
@needs("admin")
def bulk_part() -> Any:
    """One part of a bulk action, for the form's script that shows the run's progress
    live: the form's fields plus ``cursor`` (empty for the first part, then the one the
    previous part answered). Admin, checked on every part (and the CSRF token, as every
    POST); acts for at most CANGHAI_BULK_PART_STEPS steps of CANGHAI_BULK_STEP ids and
    answers this part's counts as JSON with ``run``, ``part``, ``done`` and the next
    ``cursor``. Every part is audited as ``bulk`` with the run id and the part's number.
    Bad input, or a cursor of another topic, action, status or filter: a 400 with
    ``error`` (and x-reason); nothing is touched."""
    lang = g.get("lang") or "en"
    topic = request.form.get("topic") or ""
    try:
        queues.broker().keys(topic)
    except ValueError:
        g.reason = "bad topic"
        return jsonify(error=translate(lang, "bulk_refused", why="bad topic")), 400
    cfg = get_config(CanghaiConfig)
    wanted: bulk_form.BulkInput | None = None
    try:
        wanted = bulk_form.parse(request.form)
        counts = queues.broker().bulk(topic, wanted.action, wanted.status,
                                      error=wanted.error, since=wanted.since,
                                      until=wanted.until, stat=wanted.stat,
                                      step=cfg.bulk_step, max_steps=cfg.bulk_part_steps,
                                      cursor=request.form.get("cursor") or None)
    except bulk_form.BulkInputError as exc:
        g.reason = exc.say(translate, "en")
        log("bulk", topic, g.reason, ok=False)
        return jsonify(error=exc.say(translate, lang)), 400
    except ValueError as exc:  # a bad or mismatched cursor, or a changed rule
        g.reason = f"Bulk action refused: {exc}"
        log("bulk", topic, f"{wanted.action if wanted else '?'} "
                           f"{wanted.detail() if wanted else ''}: {g.reason}", ok=False)
        return jsonify(error=translate(lang, "bulk_refused", why=str(exc))), 400
    log("bulk", topic,
        f"{wanted.action} {wanted.detail()} matched={counts.matched} acted={counts.acted} "
        f"scanned={counts.scanned} steps={counts.steps} run={counts.run} "
        f"part={counts.part}{' done' if counts.done else ''}")
    return jsonify(action=wanted.action, run=counts.run, part=counts.part, done=counts.done,
                   cursor=counts.cursor, **counts.to_dict())


@bp.post("/users/add")
@needs("admin")
def user_add() -> Any:
    name = (request.form.get("username") or "").strip()
    try:
        users.add_user(name, request.form.get("password") or "",
                       request.form.get("role") or "viewer")
    except users.UserError as exc:
        log("user_add", name, str(exc), ok=False)
        return page("users.html", active="users", rows=users.list_users(), error=str(exc)), 400
    log("user_add", name, request.form.get("role") or "viewer")
    return redirect("/console/users")


@bp.post("/users/role")
@needs("admin")
def user_role() -> Any:
    name = request.form.get("username") or ""
    try:
        users.set_role(name, request.form.get("role") or "")
    except users.UserError as exc:
        abort(400, str(exc))
    log("user_role", name, request.form.get("role") or "")
    return redirect("/console/users")


@bp.post("/users/remove")
@needs("admin")
def user_remove() -> Any:
    name = request.form.get("username") or ""
    try:
        users.remove_user(name)
    except users.UserError as exc:
        abort(404, str(exc))
    log("user_remove", name)
    return redirect("/console/users")
