"""The Data pages: wuxing's namespaces -> sections -> instances -> items over its HTTP API.

Viewers browse sections, instances, values and an item's history; operators change a value
(compare-and-set on the item's revision, so an edit made on a stale page is refused, not
lost) and roll an item back; every write is audited. The instance page re-reads its values
and wuxing's watch feed (changes after the revision it was opened at) every two seconds,
so another user's edit shows up without a reload.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, abort, redirect, request

from ..remote import RemoteError
from .common import int_arg, log, needs, page
from .remote_views import envelope, fetch, refusal_page

bp = Blueprint("data", __name__, url_prefix="/console/data")
PAGE = 20
MAX_TEXT = 20_000


def _arg(name: str, limit: int = 128) -> str:
    value = (request.args.get(name) or "").strip()
    if len(value) > limit:
        abort(400, f"{name} longer than {limit} characters")
    return value


def _pages(total: int, size: int = PAGE) -> int:
    return max(1, (total + size - 1) // size)


@bp.get("/")
@needs("viewer")
def sections() -> Any:
    """Sections of every namespace (or of one), newest change first; namespaces are the
    distinct values of the first page, offered as filters."""
    namespace = _arg("namespace", 16)
    name = _arg("q", 64)
    page_index = int_arg("page", 1, 1, 10**6)
    try:
        listed = fetch("wuxing", "section_list", namespace=namespace or None,
                       section_name=name or None, page_index=page_index, page_size=PAGE,
                       orderBy="u_time", orderDir="desc")
        everything = listed if not namespace else fetch(
            "wuxing", "section_list", page_index=1, page_size=100, orderBy="namespace",
            orderDir="asc")
    except RemoteError as exc:
        return refusal_page("wuxing", exc)
    namespaces = sorted({row["namespace"] for row in everything["list"]} | (
        {namespace} if namespace else set()))
    return page("data.html", active="data", rows=listed["list"], total=listed["total"],
                namespaces=namespaces, namespace=namespace, q=name, page_index=page_index,
                pages=_pages(listed["total"]))


@bp.get("/section")
@needs("viewer")
def section() -> Any:
    key = {"namespace": _arg("namespace", 16), "section_name": _arg("section_name", 64),
           "section_version": _arg("section_version", 16)}
    name = _arg("q", 64)
    page_index = int_arg("page", 1, 1, 10**6)
    if not all(key.values()):
        abort(400, "namespace, section_name and section_version are required")
    try:
        found = fetch("wuxing", "section_get", **key)
        listed = fetch("wuxing", "instance_list", instance_name=name or None,
                       page_index=page_index, page_size=PAGE, sort="instance_name", **key)
    except RemoteError as exc:
        return refusal_page("wuxing", exc)
    return page("data_section.html", active="data", key=key, section=found,
                rows=listed["list"], total=listed["total"], q=name, page_index=page_index,
                pages=_pages(listed["total"]), query=urlencode(key))


def _instance(namespace: str, instance_name: str) -> dict[str, Any]:
    answer = envelope("wuxing", "instance_get", namespace=namespace,
                     instance_name=instance_name, value_format="detail")
    items = sorted(answer["data"].values(), key=lambda i: i["item_name"])
    return {"items": items, "revision": answer.get("revision", 0)}


def _instance_key() -> tuple[str, str]:
    namespace, name = _arg("namespace", 16), _arg("instance_name", 64)
    if not namespace or not name:
        abort(400, "namespace and instance_name are required")
    return namespace, name


@bp.get("/instance")
@needs("viewer")
def instance() -> Any:
    namespace, name = _instance_key()
    try:
        found = _instance(namespace, name)
    except RemoteError as exc:
        return refusal_page("wuxing", exc)
    return page("data_instance.html", active="data", namespace=namespace, instance_name=name,
                opened=found["revision"], changes=[], error=request.args.get("error", ""),
                **found)


@bp.get("/instance/live")
@needs("viewer")
def instance_live() -> Any:
    """The values and the changes to this instance since the page was opened (wuxing's
    watch without waiting: the page polls this fragment)."""
    namespace, name = _instance_key()
    since = int_arg("since", 0, 0, 2**62)
    try:
        found = _instance(namespace, name)
        feed = fetch("wuxing", "watch", namespace=namespace, since=since, timeout=0)
    except RemoteError as exc:
        return page("_data_items.html", namespace=namespace, instance_name=name, items=[],
                    revision=0, opened=since, changes=[], live_error=exc.reason)
    changes = [c for c in feed.get("changes", []) if c.get("instance_name") == name][-20:]
    return page("_data_items.html", namespace=namespace, instance_name=name, opened=since,
                changes=list(reversed(changes)), live_error="", **found)


@bp.post("/item")
@needs("operator")
def item_update() -> Any:
    """Set one value with CAS on the item's revision as the page showed it."""
    namespace = (request.form.get("namespace") or "").strip()[:16]
    name = (request.form.get("instance_name") or "").strip()[:64]
    item = (request.form.get("item_name") or "").strip()[:64]
    value = request.form.get("item_value") or ""
    if not namespace or not name or not item or len(value) > MAX_TEXT:
        abort(400, "namespace, instance_name, item_name and item_value (<= 20000) needed")
    try:
        revision = int(request.form.get("revision") or "")
    except ValueError:
        abort(400, "revision must be an integer")
    target = f"{namespace}/{name} {item}"
    back = {"namespace": namespace, "instance_name": name}
    try:
        done = envelope("wuxing", "instance_update_item", namespace=namespace,
                     instance_name=name, item_name=item, item_value=value,
                     revision=revision)
    except RemoteError as exc:
        log("data_set", target, f"{exc.stat}: {exc.reason}", ok=False)
        if exc.unreachable:
            return refusal_page("wuxing", exc)
        back["error"] = f"{exc.stat}: {exc.reason}"
        return redirect("/console/data/instance?" + urlencode(back))
    log("data_set", target, f"value={value[:200]} revision={done['data'].get('revision')}")
    return redirect("/console/data/instance?" + urlencode(back))


@bp.get("/item")
@needs("viewer")
def item() -> Any:
    item_id = int_arg("id", 0, 0, 2**62)
    page_index = int_arg("page", 1, 1, 10**6)
    if not item_id:
        abort(400, "id is required")
    try:
        found = fetch("wuxing", "item_get", item_id=item_id)
        hist = fetch("wuxing", "item_history_list", item_id=item_id, page_index=page_index,
                     page_size=PAGE)
    except RemoteError as exc:
        return refusal_page("wuxing", exc)
    return page("data_item.html", active="data", item=found, item_id=item_id,
                rows=hist["list"], total=hist["total"], page_index=page_index,
                pages=_pages(hist["total"]))


@bp.post("/item/rollback")
@needs("operator")
def item_rollback() -> Any:
    try:
        item_id = int(request.form.get("item_id") or "")
        revision = int(request.form.get("revision") or "")
    except ValueError:
        abort(400, "item_id and revision must be integers")
    if not (0 < item_id < 2**62 and 0 <= revision < 2**62):
        abort(400, "item_id or revision out of range")
    try:
        done = envelope("wuxing", "item_rollback", item_id=item_id, revision=revision)
    except RemoteError as exc:
        log("data_rollback", f"item {item_id}", f"{exc.stat}: {exc.reason}", ok=False)
        return refusal_page("wuxing", exc)
    log("data_rollback", f"item {item_id}",
        f"to revision {revision}, new revision {done['data'].get('revision')}")
    return redirect(f"/console/data/item?id={item_id}")
