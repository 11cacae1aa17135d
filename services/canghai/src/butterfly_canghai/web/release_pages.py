"""The Releases pages: wuxing's reviewed publishing and gray releases over its HTTP API.

Per namespace, one page for the publishing flow (review settings, the draft and its diff
against the latest release, publish with a message, the request waiting for approval,
releases with a diff between any two and rollback, wuxing's review log) and one for gray
releases (their rules and client counts, create, promote, abort, and which client runs
which release). Viewers see everything and no write buttons; every write needs the role
here as well (a forged POST is a 403 before wuxing is asked), carries the session's CSRF
token and lands in canghai's audit log, refused ones too. wuxing's own refusals (a user
approving their own publish, a stale draft, the gray limit) come back as the page with the
reason shown, never a 5xx; wuxing not answering is a 502.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, abort, redirect, request

from ..remote import RemoteError
from .common import int_arg, log, needs, page
from .remote_views import envelope, fetch, refusal_page

bp = Blueprint("releases", __name__, url_prefix="/console/releases")
PAGE = 10
MAX_TEXT = 1000
MAX_VALUE = 20_000
MAX_RULE = 100
#: gray release states wuxing knows (gray_list's ``state`` filter)
GRAY_STATES = ("pending", "active", "promoting", "promoted", "aborted", "rejected")


def _arg(source: Any, name: str, limit: int, required: bool = True) -> str:
    value = (source.get(name) or "").strip()
    if len(value) > limit:
        abort(400, f"{name} longer than {limit} characters")
    if required and not value:
        abort(400, f"{name} is required")
    return value


def _namespace(source: Any) -> str:
    return _arg(source, "namespace", 16)


def _int(source: Any, name: str, required: bool = True) -> int | None:
    text = (source.get(name) or "").strip()
    if not text and not required:
        return None
    try:
        value = int(text)
    except ValueError:
        abort(400, f"{name} must be an integer")
    if not 0 < value < 2**62:
        abort(400, f"{name} out of range")
    return value


def _names(text: str) -> list[str]:
    """A comma or whitespace separated list (clients, labels, IP ranges) as wuxing takes it."""
    names = [part for part in text.replace(",", " ").split() if part]
    if len(names) > MAX_RULE:
        abort(400, f"at most {MAX_RULE} entries per list")
    return names


def _reason(exc: RemoteError) -> str:
    """wuxing's refusal in one line, with a rejected draft's violations spelled out."""
    text = f"{exc.stat}: {exc.reason}"
    violations = exc.data.get("violations") or []
    if violations:
        text += " — " + "; ".join(str(v.get("reason", v))[:200] for v in violations[:10])
    return text[:1500]


def _write(action: str, target: str, path: str, back: str, detail: str,
           params: dict[str, Any]) -> Any:
    """Call ``path`` on wuxing as the signed-in user, audit it, and go back to ``back``
    saying so (``done``: the action) or why wuxing refused (``error``)."""
    try:
        answer = envelope("wuxing", path, **params)
    except RemoteError as exc:
        log(action, target, _reason(exc)[:500], ok=False)
        if exc.unreachable:
            return refusal_page("wuxing", exc)
        return redirect(f"{back}&" + urlencode({"error": _reason(exc)}))
    data = answer.get("data") or {}
    state = data.get("state") if isinstance(data, dict) else None
    log(action, target, " ".join(p for p in (detail, f"state={state}" if state else "") if p))
    return redirect(f"{back}&" + urlencode({"done": action}))


def _back(namespace: str, view: str = "") -> str:
    return f"/console/releases/{view}?" + urlencode({"namespace": namespace})


def _namespaces() -> list[str]:
    listed = fetch("wuxing", "section_list", page_index=1, page_size=100,
                   orderBy="namespace", orderDir="asc")
    return sorted({row["namespace"] for row in listed["list"]})


def _view(template: str, namespace: str, load: Callable[[], dict[str, Any]]) -> Any:
    try:
        found = load()
        namespaces = _namespaces()
    except RemoteError as exc:
        return refusal_page("wuxing", exc)
    if namespace not in namespaces:
        namespaces.append(namespace)
    return page(template, active="releases", namespace=namespace, namespaces=namespaces,
                error=request.args.get("error", "")[:1500],
                done=request.args.get("done", "")[:40], **found)


# -- pages -----------------------------------------------------------------------------------

@bp.get("/")
@needs("viewer")
def releases() -> Any:
    """The publishing flow of one namespace (the first one wuxing lists when none is given)."""
    namespace = _arg(request.args, "namespace", 16, required=False)
    if not namespace:
        try:
            known = _namespaces()
        except RemoteError as exc:
            return refusal_page("wuxing", exc)
        if not known:
            return page("releases_none.html", active="releases")
        return redirect(_back(known[0]))
    page_index = int_arg("page", 1, 1, 10**6)
    diff_from = int_arg("from", 0, 0, 2**62)  # anything else: no diff asked
    diff_to = int_arg("to", 0, 0, 2**62)

    def load() -> dict[str, Any]:
        settings = fetch("wuxing", "review_get", namespace=namespace)
        found: dict[str, Any] = {"settings": settings, "draft": None, "draft_diff": None,
                                 "diff": None, "page_index": page_index}
        if settings["review"]:
            found["draft"] = fetch("wuxing", "draft_get", namespace=namespace)
            found["draft_diff"] = fetch("wuxing", "draft_diff", namespace=namespace)
        listed = fetch("wuxing", "release_list", namespace=namespace, page_index=page_index,
                       page_size=PAGE)
        found.update(rows=listed["list"], total=listed["total"],
                     pages=max(1, (listed["total"] + PAGE - 1) // PAGE),
                     log_rows=fetch("wuxing", "review_log", namespace=namespace,
                                    page_size=20)["list"])
        if diff_from and diff_to:
            try:
                found["diff"] = fetch("wuxing", "release_diff", namespace=namespace,
                                      from_revision=diff_from, to_revision=diff_to)
            except RemoteError as exc:
                if exc.unreachable:
                    raise
                found["diff_error"] = _reason(exc)
        return found

    return _view("releases.html", namespace, load)


@bp.get("/gray")
@needs("viewer")
def gray() -> Any:
    """Gray releases of a namespace with their client counts, and every reporting client
    with the release it runs."""
    namespace = _namespace(request.args)
    state = _arg(request.args, "state", 16, required=False)
    if state and state not in GRAY_STATES:
        abort(400, "unknown state")
    client_page = int_arg("clients_page", 1, 1, 10**6)

    def load() -> dict[str, Any]:
        listed = fetch("wuxing", "gray_list", namespace=namespace, state=state or None,
                       page_size=50)
        clients = fetch("wuxing", "client_list", namespace=namespace,
                        page_index=client_page, page_size=50)
        return {"settings": fetch("wuxing", "review_get", namespace=namespace),
                "grays": listed["list"], "gray_total": listed["total"],
                "limit": listed.get("limit"), "state": state, "states": GRAY_STATES,
                "stats": fetch("wuxing", "client_stats", namespace=namespace),
                "clients": clients["list"], "client_total": clients["total"],
                "ttl": clients.get("ttl"), "client_page": client_page,
                "client_pages": max(1, (clients["total"] + 49) // 50)}

    return _view("releases_gray.html", namespace, load)


@bp.get("/gray/one")
@needs("viewer")
def gray_one() -> Any:
    """One gray release: its rule, its values and the clients running it."""
    namespace = _namespace(request.args)
    gray_id = _int(request.args, "id")

    def load() -> dict[str, Any]:
        return {"gray": fetch("wuxing", "gray_get", namespace=namespace, gray_id=gray_id),
                "clients": fetch("wuxing", "client_list", namespace=namespace,
                                 gray_id=gray_id, page_size=100)["list"]}

    return _view("releases_gray_one.html", namespace, load)


# -- writes ----------------------------------------------------------------------------------

@bp.post("/review")
@needs("admin")
def review_set() -> Any:
    """Turn reviewed publishing (and the second person's approval) on or off."""
    namespace = _namespace(request.form)
    review = request.form.get("review") == "1"
    approval = review and request.form.get("approval") == "1"
    return _write("release_review_set", namespace, "review_set", _back(namespace),
                  f"review={review} approval={approval}",
                  {"namespace": namespace, "review": review, "approval": approval})


@bp.post("/draft")
@needs("operator")
def draft_set() -> Any:
    """One value into the draft (wuxing checks it against the item's section)."""
    namespace = _namespace(request.form)
    instance = _arg(request.form, "instance_name", 64)
    item = _arg(request.form, "item_name", 64)
    value = request.form.get("item_value") or ""
    if len(value) > MAX_VALUE:
        abort(400, f"item_value longer than {MAX_VALUE} characters")
    return _write("release_draft_set", f"{namespace}/{instance} {item}", "draft_set",
                  _back(namespace), f"value={value[:200]}",
                  {"namespace": namespace, "instance_name": instance, "items": {item: value}})


@bp.post("/draft/discard")
@needs("operator")
def draft_discard() -> Any:
    """Drop the whole draft, or one entry of it."""
    namespace = _namespace(request.form)
    instance = _arg(request.form, "instance_name", 64, required=False)
    item = _arg(request.form, "item_name", 64, required=False)
    if item and not instance:
        abort(400, "item_name needs instance_name")
    target = f"{namespace}/{instance} {item}".strip() if instance else namespace
    return _write("release_draft_discard", target, "draft_discard", _back(namespace), "",
                  {"namespace": namespace, "instance_name": instance or None,
                   "items": [item] if item else None})


@bp.post("/publish")
@needs("operator")
def publish() -> Any:
    namespace = _namespace(request.form)
    message = _arg(request.form, "message", MAX_TEXT, required=False)  # wuxing says why
    return _write("release_publish", namespace, "publish", _back(namespace), message[:200],
                  {"namespace": namespace, "message": message})


DECISIONS = {"approve": "publish_approve", "reject": "publish_reject"}


@bp.post("/decide")
@needs("operator")
def decide() -> Any:
    """Approve or reject the request waiting in the namespace (a publish, rollback, gray
    release or promote), with a comment. wuxing refuses its author (ERR_SELF_APPROVAL)."""
    namespace = _namespace(request.form)
    decision = request.form.get("decision") or ""
    if decision not in DECISIONS:
        abort(400, "decision must be approve or reject")
    comment = _arg(request.form, "comment", MAX_TEXT, required=False)  # wuxing says why
    request_id = _arg(request.form, "request", 20, required=False)
    return _write(f"release_{decision}", f"{namespace} request {request_id}".strip(),
                  DECISIONS[decision], _back(namespace), comment[:200],
                  {"namespace": namespace, "comment": comment})


@bp.post("/rollback")
@needs("operator")
def rollback() -> Any:
    namespace = _namespace(request.form)
    revision = _int(request.form, "revision")
    message = _arg(request.form, "message", MAX_TEXT, required=False)
    return _write("release_rollback", f"{namespace} revision {revision}", "release_rollback",
                  _back(namespace), message[:200],
                  {"namespace": namespace, "revision": revision, "message": message or None})


@bp.post("/gray/create")
@needs("operator")
def gray_create() -> Any:
    """A gray release of the draft (or of release ``revision``) for the clients, labels and
    IP ranges given."""
    namespace = _namespace(request.form)
    rule = {key: _names(_arg(request.form, key, 8000, required=False))
            for key in ("clients", "labels", "ips")}
    if not any(rule.values()):
        return redirect(f"{_back(namespace, 'gray')}&" + urlencode(
            {"error": "name at least one client, label or IP range"}))
    revision = _int(request.form, "revision", required=False)
    message = _arg(request.form, "message", MAX_TEXT, required=False)
    detail = " ".join(f"{k}={','.join(v)}" for k, v in rule.items() if v)
    return _write("release_gray_create", namespace, "gray_create",
                  _back(namespace, "gray"), detail[:400],
                  {"namespace": namespace, "revision": revision, "message": message or None,
                   **{k: v or None for k, v in rule.items()}})


GRAY_ACTIONS = {"promote": ("gray_promote", "message"), "abort": ("gray_abort", "comment")}


@bp.post("/gray/action")
@needs("operator")
def gray_action() -> Any:
    """Promote a gray release to a main release, or abort it."""
    namespace = _namespace(request.form)
    gray_id = _int(request.form, "gray_id")
    name = request.form.get("action") or ""
    if name not in GRAY_ACTIONS:
        abort(400, "action must be promote or abort")
    path, field = GRAY_ACTIONS[name]
    text = _arg(request.form, "comment", MAX_TEXT, required=False)
    return _write(f"release_gray_{name}", f"{namespace} gray {gray_id}", path,
                  _back(namespace, "gray"), text[:200],
                  {"namespace": namespace, "gray_id": gray_id, field: text or None})

