"""Reviewed publishing: draft -> publish (-> approval) -> release, per namespace opt-in.

A namespace with ``review`` on changes its values only through its draft: ``draft_set``
stores checked values aside (clients keep reading the live ones), ``publish`` applies the
whole draft as one write - one namespace revision - and records a release (message,
author, every value of the namespace at that revision). With ``approval`` on, ``publish``
only asks: the draft is frozen until a second person approves (then it is published) or
anyone rejects. Nobody who edited the draft or asked may approve it. A gray release
created with approval on is such a request too (``kind: gray``, see gray.py): approving it
makes the gray release active (the request is then ``approved``, no release). A rollback is a new
release carrying an older release's values. Every step is written to the audit log
(``wuxing_review_log``). Namespaces without ``review`` keep the direct-write API; in a
reviewed one the direct value writes are refused (store.run_write ``direct``).

Structure (sections, instance create with defaults, upgrade, delete) stays direct in both
modes; a release's snapshot records whatever the namespace holds when it is published.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from butterfly_common.protocol import json_default

from . import errors as E
from . import instances, sections, values
from .errors import WuxingError
from .itemrows import set_value, value_of
from .listing import page
from .models import Draft, Gray, Instance, Item, NamespaceSetting, Release, ReviewLog, now
from .revisions import namespace_revision
from .store import Write, reviewed, run_locked, run_write

#: Longest publish message / approval comment.
MESSAGE_MAX = 1000
_Snapshot = dict[str, dict[str, Any]]


def _text(value: str | None, what: str, required: bool) -> str:
    text = (value or "").strip()
    if required and not text:
        raise WuxingError(E.ERR_PARAM_IS_INVALID, f"{what} is required")
    if len(text) > MESSAGE_MAX:
        raise WuxingError(E.ERR_PARAM_IS_INVALID, f"{what} is longer than {MESSAGE_MAX}")
    return text


def _audit(namespace: str, action: str, user: str, comment: str = "",
           revision: int | None = None, **detail: Any) -> None:
    ReviewLog.create(namespace=namespace, action=action, user=user, comment=comment,
                     revision=revision,
                     detail=json.dumps(detail, ensure_ascii=False, default=json_default))


def _setting(namespace: str) -> NamespaceSetting | None:
    return NamespaceSetting.get_or_none(NamespaceSetting.namespace == namespace)


def _require_review(namespace: str) -> NamespaceSetting:
    row = _setting(namespace)
    if row is None or not row.review:
        raise WuxingError(E.ERR_NAMESPACE_NOT_REVIEWED,
                          f"namespace {namespace} writes directly: turn review on with "
                          "review_set first")
    return row


def _pending(namespace: str) -> Release | None:
    return Release.get_or_none((Release.namespace == namespace)
                               & (Release.state == "pending"))


def _refuse_if_pending(namespace: str) -> None:
    found = _pending(namespace)
    if found is not None:
        raise WuxingError(E.ERR_PUBLISH_PENDING,
                          f"a publish asked by {found.author} waits for approval: approve or "
                          "reject it first", {"request": _release_doc(found, False)})


def _latest(namespace: str) -> Release | None:
    return (Release.select().where((Release.namespace == namespace)
                                   & (Release.state == "published"))
            .order_by(Release.revision.desc()).first())


def snapshot(namespace: str) -> _Snapshot:
    """Every live value of the namespace: ``{instance_name: {item_name: value}}``."""
    out: _Snapshot = {}
    for item in Item.select().where(Item.namespace == namespace).order_by(
            Item.instance_name, Item.item_name):
        out.setdefault(item.instance_name, {})[item.item_name] = value_of(item)
    return out


def _draft_rows(namespace: str) -> list[Draft]:
    return list(Draft.select().where(Draft.namespace == namespace)
                .order_by(Draft.instance_name, Draft.item_name))


def _release_doc(row: Release, with_values: bool) -> dict[str, Any]:
    doc = {"id": row.id, "namespace": row.namespace, "state": row.state, "kind": row.kind,
           "revision": row.revision, "rollback_of": row.rollback_of, "message": row.message,
           "author": row.author, "approver": row.approver, "comment": row.comment,
           "c_time": json_default(row.c_time),
           "p_time": json_default(row.p_time) if row.p_time else None}
    if with_values:
        doc["values"] = json.loads(row.snapshot) if row.snapshot else None
    return doc


# -- settings --------------------------------------------------------------------------------

def get_settings(namespace: str) -> dict[str, Any]:
    values.check_namespace(namespace)
    row = _setting(namespace)
    latest = _latest(namespace)
    pending = _pending(namespace)
    return {"namespace": namespace, "review": bool(row and row.review),
            "approval": bool(row and row.approval),
            "draft_items": Draft.select().where(Draft.namespace == namespace).count(),
            "pending": _release_doc(pending, False) if pending else None,
            "latest_release": latest.revision if latest else None}


def set_settings(namespace: str, review: bool, approval: bool, user: str) -> dict[str, Any]:
    """Turn review (and approval) on or off. Turning review on records a baseline release
    of the current values; turning it off needs an empty draft and no pending request."""
    values.check_namespace(namespace)
    if approval and not review:
        raise WuxingError(E.ERR_PARAM_IS_INVALID, "approval needs review: true")

    def change() -> dict[str, Any]:
        row = _setting(namespace)
        was = bool(row and row.review)
        if was and not review:
            _refuse_if_pending(namespace)
            if Draft.select().where(Draft.namespace == namespace).exists():
                raise WuxingError(E.ERR_DRAFT_NOT_EMPTY,
                                  "the draft is not empty: publish or draft_discard it first")
            if Gray.select().where((Gray.namespace == namespace)
                                   & Gray.state.in_(["active", "promoting"])).exists():
                raise WuxingError(E.ERR_GRAY_ACTIVE,
                                  "gray releases are running: promote or abort them first")
        if row is None:
            NamespaceSetting.create(namespace=namespace, review=review, approval=approval,
                                    user=user)
        else:
            NamespaceSetting.update(review=review, approval=approval, user=user,
                                    u_time=now()).where(
                NamespaceSetting.namespace == namespace).execute()
        baseline = None
        if review and not was:
            revision = namespace_revision(namespace)[0]
            if not Release.select().where((Release.namespace == namespace)
                                          & (Release.revision == revision)).exists():
                Release.create(namespace=namespace, state="published", kind="baseline",
                               revision=revision, message="review turned on", author=user,
                               snapshot=json.dumps(snapshot(namespace), ensure_ascii=False),
                               p_time=now())
                baseline = revision
        _audit(namespace, "settings", user, review=review, approval=approval,
               baseline=baseline)
        return {"namespace": namespace, "review": review, "approval": approval,
                "baseline_revision": baseline}

    return run_locked(namespace, change)


# -- the draft -------------------------------------------------------------------------------

def _check_value(namespace: str, instance_name: str, item_name: str, value: Any,
                 templates: dict[str, dict[str, Any] | None]) -> Any:
    """``value`` checked against the item's current section; raises a WuxingError."""
    if instance_name not in templates:
        found = Instance.get_or_none((Instance.namespace == namespace)
                                     & (Instance.instance_name == instance_name))
        templates[instance_name] = None if found is None else instances._template_for(found)
    template = templates[instance_name]
    if template is None:
        raise WuxingError(E.ERR_INSTANCE_IS_NOT_EXIST,
                          f"instance {namespace}/{instance_name} does not exist")
    if item_name not in template:
        raise WuxingError(E.ERR_ITEM_IS_NOT_EXIST, f"{instance_name}: no item {item_name}",
                          {"item_name": item_name})
    return instances.checked(template, item_name, value)


def _flatten(instance_name: str, item_name: str, exc: WuxingError) -> list[dict[str, Any]]:
    """One refusal as violation entries: one per JSON Schema violation, else one."""
    found = exc.data.get("violations")
    if not found:
        return [{"instance_name": instance_name, "item_name": item_name, "stat": exc.stat,
                 "reason": exc.reason}]
    out = []
    for v in found:
        item = item_name or (v["path"].split("/")[1] if v["path"].count("/") >= 1 else "")
        out.append({"instance_name": instance_name, "item_name": item, "stat": exc.stat,
                    "path": v["path"], "reason": v["message"]})
    return out


def _check_document(namespace: str, instance_name: str,
                    new: Mapping[str, Any]) -> None:
    """The instance's live values, its draft and ``new`` on top, against its section
    schema (ERR_SCHEMA_VIOLATION with every violation)."""
    instance = instances.find(namespace, instance_name)
    schema = sections.schema_for(namespace, instance.section_name, instance.section_version,
                                 instance.section_md5)
    if schema is None:
        return
    document = {name: value_of(item) for name, item in
                instances.items_of(namespace, instance_name).items()}
    for row in Draft.select().where((Draft.namespace == namespace)
                                    & (Draft.instance_name == instance_name)):
        document[row.item_name] = json.loads(row.value)
    document.update(new)
    sections.check_document(namespace, instance.section_name, instance.section_version,
                            instance.section_md5, document, instance_name)


def _invalid_draft(violations: list[dict[str, Any]]) -> WuxingError:
    return WuxingError(E.ERR_DRAFT_INVALID,
                       f"{len(violations)} violation(s): "
                       + "; ".join(f"{v['instance_name']}/{v['item_name']}"
                                   f"{v.get('path', '')}: {v['reason']}"
                                   for v in violations)[:900],
                       {"violations": violations})


def draft_set(namespace: str, instance_name: str, items: Mapping[str, Any],
              user: str) -> dict[str, Any]:
    """Put checked values into the draft (a value equal to the live one leaves it)."""
    values.check_namespace(namespace)
    instances.check_instance_name(instance_name)
    if not isinstance(items, Mapping) or not items:
        raise WuxingError(E.ERR_PARAM_IS_INVALID, "items must be a non-empty JSON object")

    def change() -> dict[str, Any]:
        _require_review(namespace)
        _refuse_if_pending(namespace)
        instances.find(namespace, instance_name)
        templates: dict[str, dict[str, Any] | None] = {}
        checked, failed = {}, []
        for name, value in items.items():
            try:
                checked[name] = _check_value(namespace, instance_name, name, value, templates)
            except WuxingError as exc:
                failed.append(exc)
        if len(failed) == 1:
            raise failed[0]
        if failed:
            raise _invalid_draft([v for exc in failed for v in _flatten(
                instance_name, exc.data.get("item_name", ""), exc)])
        _check_document(namespace, instance_name, checked)
        live = {name: value_of(i) for name, i in instances.items_of(
            namespace, instance_name, sorted(checked)).items()}
        changed, same = {}, []
        for name, value in checked.items():
            Draft.delete().where((Draft.namespace == namespace)
                                 & (Draft.instance_name == instance_name)
                                 & (Draft.item_name == name)).execute()
            if name in live and live[name] == value:
                same.append(name)
                continue
            Draft.create(namespace=namespace, instance_name=instance_name, item_name=name,
                         value=json.dumps(value, ensure_ascii=False), user=user)
            changed[name] = value
        _audit(namespace, "draft_set", user, instance_name=instance_name,
               items=sorted(checked))
        return {"instance_name": instance_name, "items": changed, "unchanged": sorted(same)}

    return run_locked(namespace, change)


def draft_discard(namespace: str, instance_name: str | None, items: list[str] | None,
                  user: str) -> dict[str, Any]:
    """Drop draft entries: all, an instance's, or some items of an instance."""
    values.check_namespace(namespace)
    if items and not instance_name:
        raise WuxingError(E.ERR_PARAM_IS_INVALID, "items needs instance_name")
    if instance_name is not None:
        instances.check_instance_name(instance_name)

    def change() -> dict[str, Any]:
        _require_review(namespace)
        _refuse_if_pending(namespace)
        query = Draft.delete().where(Draft.namespace == namespace)
        if instance_name is not None:
            query = query.where(Draft.instance_name == instance_name)
        if items:
            query = query.where(Draft.item_name.in_(list(items)))
        removed = query.execute()
        _audit(namespace, "draft_discard", user, instance_name=instance_name, items=items,
               removed=removed)
        return {"removed": removed}

    return run_locked(namespace, change)


def draft_get(namespace: str) -> dict[str, Any]:
    values.check_namespace(namespace)
    rows = _draft_rows(namespace)
    live: dict[tuple[str, str], Any] = {}
    names = {r.instance_name for r in rows}
    if names:
        for item in Item.select().where((Item.namespace == namespace)
                                        & Item.instance_name.in_(sorted(names))):
            live[(item.instance_name, item.item_name)] = value_of(item)
    pending = _pending(namespace)
    return {"namespace": namespace, "total": len(rows),
            "list": [{"instance_name": r.instance_name, "item_name": r.item_name,
                      "item_value": json.loads(r.value),
                      "item_value_live": live.get((r.instance_name, r.item_name)),
                      "user": r.user, "u_time": json_default(r.u_time)} for r in rows],
            "pending": _release_doc(pending, False) if pending else None}


# -- diff ------------------------------------------------------------------------------------

def diff_values(old: _Snapshot, new: _Snapshot) -> list[dict[str, Any]]:
    """Item by item: added, removed or changed, sorted by instance and item."""
    out = []
    for inst in sorted(set(old) | set(new)):
        before, after = old.get(inst, {}), new.get(inst, {})
        for name in sorted(set(before) | set(after)):
            if name not in before:
                out.append({"instance_name": inst, "item_name": name, "change": "added",
                            "old": None, "new": after[name]})
            elif name not in after:
                out.append({"instance_name": inst, "item_name": name, "change": "removed",
                            "old": before[name], "new": None})
            elif before[name] != after[name]:
                out.append({"instance_name": inst, "item_name": name, "change": "changed",
                            "old": before[name], "new": after[name]})
    return out


def _release_values(namespace: str, revision: int) -> _Snapshot:
    values.in_range(revision, E.ERR_RELEASE_NOT_FOUND, "revision")
    row = Release.get_or_none((Release.namespace == namespace) & (Release.revision == revision)
                              & (Release.state == "published"))
    if row is None:
        raise WuxingError(E.ERR_RELEASE_NOT_FOUND,
                          f"namespace {namespace} has no release at revision {revision}")
    return json.loads(row.snapshot or "{}")


def _with_draft(namespace: str) -> _Snapshot:
    live = snapshot(namespace)
    for row in _draft_rows(namespace):
        live.setdefault(row.instance_name, {})[row.item_name] = json.loads(row.value)
    return live


def draft_diff(namespace: str) -> dict[str, Any]:
    """What publishing the draft now would change against the latest release."""
    values.check_namespace(namespace)
    _require_review(namespace)
    latest = _latest(namespace)
    base = json.loads(latest.snapshot or "{}") if latest else {}
    return {"namespace": namespace, "from_revision": latest.revision if latest else None,
            "to": "draft", "changes": diff_values(base, _with_draft(namespace))}


def release_diff(namespace: str, from_revision: int, to_revision: int) -> dict[str, Any]:
    values.check_namespace(namespace)
    return {"namespace": namespace, "from_revision": from_revision,
            "to_revision": to_revision,
            "changes": diff_values(_release_values(namespace, from_revision),
                                   _release_values(namespace, to_revision))}


# -- releases --------------------------------------------------------------------------------

def release_list(namespace: str, state: str | None, page_index: int,
                 page_size: int) -> dict[str, Any]:
    values.check_namespace(namespace)
    query = Release.select().where(Release.namespace == namespace)
    if state is not None:
        if state not in ("pending", "published", "rejected", "approved"):
            raise WuxingError(E.ERR_PARAM_IS_INVALID,
                              "state must be pending, published, rejected or approved")
        query = query.where(Release.state == state)
    total, rows = page(query.order_by(Release.id.desc()), page_index, page_size)
    return {"total": total, "list": [_release_doc(r, False) for r in rows]}


def release_get(namespace: str, revision: int) -> dict[str, Any]:
    values.check_namespace(namespace)
    values.in_range(revision, E.ERR_RELEASE_NOT_FOUND, "revision")
    row = Release.get_or_none((Release.namespace == namespace)
                              & (Release.revision == revision))
    if row is None:
        raise WuxingError(E.ERR_RELEASE_NOT_FOUND,
                          f"namespace {namespace} has no release at revision {revision}")
    return _release_doc(row, True)


def checked_draft(namespace: str) -> list[tuple[Draft, Any]]:
    """The draft's entries with their values, every one checked again against its section
    as it is now (and each instance as a whole against its section schema); any failure
    refuses with every violation listed (ERR_DRAFT_INVALID), an empty draft ERR_DRAFT_EMPTY."""
    rows = _draft_rows(namespace)
    if not rows:
        raise WuxingError(E.ERR_DRAFT_EMPTY, "the draft is empty: nothing to publish")
    templates: dict[str, dict[str, Any] | None] = {}
    violations, plan = [], []
    for row in rows:
        try:
            value = _check_value(namespace, row.instance_name, row.item_name,
                                 json.loads(row.value), templates)
        except WuxingError as exc:
            violations.extend(_flatten(row.instance_name, row.item_name, exc))
            continue
        plan.append((row, value))
    # each instance as a whole, as it would be published, against its section schema
    for name in sorted({row.instance_name for row, _ in plan}):
        if templates.get(name) is None:
            continue
        try:
            _check_document(namespace, name, {row.item_name: value for row, value in plan
                                              if row.instance_name == name})
        except WuxingError as exc:
            violations.extend(_flatten(name, "", exc))
    if violations:
        raise _invalid_draft(violations)
    return plan


def _apply(write: Write, namespace: str) -> list[str]:
    """Apply the whole draft in ``write`` (checked by :func:`checked_draft`)."""
    plan = checked_draft(namespace)
    editors = sorted({row.user for row, _ in plan})
    touched: dict[str, Any] = {}
    for row, value in plan:
        items = instances.items_of(namespace, row.instance_name, [row.item_name])
        item = items[row.item_name]
        if value != value_of(item):
            set_value(write, item, value, cmd="publish")
            touched[row.instance_name] = True
    for name in touched:
        instances._touch(write, instances.find(namespace, name))
    Draft.delete().where(Draft.namespace == namespace).execute()
    return editors


def _publish_in(write: Write, namespace: str, release: Release | None, *, kind: str,
                message: str, author: str, approver: str = "", comment: str = "",
                rollback_of: int | None = None) -> Release:
    _apply(write, namespace)
    fields = {"state": "published", "revision": write.revision, "approver": approver,
              "comment": comment, "p_time": now(),
              "snapshot": json.dumps(snapshot(namespace), ensure_ascii=False)}
    if release is None:
        return Release.create(namespace=namespace, kind=kind, message=message,
                              author=author, rollback_of=rollback_of, **fields)
    Release.update(**fields).where(Release.id == release.id).execute()
    return Release.get_by_id(release.id)


def publish(namespace: str, message: str, user: str) -> dict[str, Any]:
    """Publish the draft as one release, or (approval on) ask for it to be approved."""
    values.check_namespace(namespace)
    message = _text(message, "message", True)
    setting = _require_review(namespace)
    if setting.approval:
        return _request(namespace, message, user, "publish", None)

    def change(write: Write) -> Release:
        _require_review(namespace)
        _refuse_if_pending(namespace)
        if _setting(namespace).approval:  # type: ignore[union-attr]  # turned on meanwhile
            raise WuxingError(E.ERR_PARAM_IS_INVALID,
                              "approval was turned on meanwhile: publish again")
        release = _publish_in(write, namespace, None, kind="publish", message=message,
                              author=user)
        _audit(namespace, "publish", user, message, write.revision)
        return release

    release, _ = run_write(namespace, user, change)
    return _release_doc(release, False)


def _request(namespace: str, message: str, user: str, kind: str,
             rollback_of: int | None, changes: _Snapshot | None = None) -> dict[str, Any]:
    def change() -> Release:
        setting = _require_review(namespace)
        _refuse_if_pending(namespace)
        if changes is not None:
            _refuse_non_empty_draft(namespace)
            _fill_draft(namespace, changes, user)
        if not setting.approval:
            raise WuxingError(E.ERR_PARAM_IS_INVALID,
                              "approval was turned off meanwhile: publish again")
        if not Draft.select().where(Draft.namespace == namespace).exists():
            raise WuxingError(E.ERR_DRAFT_EMPTY, "the draft is empty: nothing to publish")
        release = Release.create(namespace=namespace, state="pending", kind=kind,
                                 message=message, author=user, rollback_of=rollback_of)
        _audit(namespace, "request", user, message, kind=kind, rollback_of=rollback_of)
        return release

    return _release_doc(run_locked(namespace, change), False)


def _gray_of(request: Release) -> Gray | None:
    """The gray release a request of kind ``gray`` (create) or ``promote`` is about."""
    if request.kind not in ("gray", "promote"):
        return None
    return Gray.get_or_none((Gray.namespace == request.namespace)
                            & (Gray.request == request.id))


def _answer(request: Release, gray: Gray | None) -> dict[str, Any]:
    doc = _release_doc(request, False)
    if gray is not None:
        doc["gray_id"] = gray.id
    return doc


def _approve_gray(write: Write, namespace: str, pending: Release, gray: Gray,
                  comment: str, user: str) -> Release:
    """The pending gray release becomes ``active`` (served from this revision on); the
    request is ``approved`` (a gray release is no main release: no revision, no values).
    A draft it came from is checked again and emptied, as a publish would."""
    if gray.source == "draft":
        checked_draft(namespace)
        Draft.delete().where(Draft.namespace == namespace).execute()
    Gray.update(state="active", request=None, u_time=now()).where(
        Gray.id == gray.id).execute()
    Release.update(state="approved", approver=user, comment=comment, p_time=now()).where(
        Release.id == pending.id).execute()
    write.record("gray", "gray_approve",
                 value_new={"gray_id": gray.id, "rule": json.loads(gray.rule)})
    return Release.get_by_id(pending.id)


def approve(namespace: str, comment: str, user: str) -> dict[str, Any]:
    """A second person approves the pending request: a publish (rollback, promote) is
    published as one release; a gray release's creation makes it ``active``."""
    values.check_namespace(namespace)
    comment = _text(comment, "comment", True)

    def change(write: Write) -> tuple[Release, Gray | None]:
        _require_review(namespace)
        pending = _pending(namespace)
        if pending is None:
            raise WuxingError(E.ERR_PUBLISH_NOT_PENDING, "no publish waits for approval")
        gray = _gray_of(pending)
        editors = {pending.author}
        if pending.kind != "gray" or (gray is not None and gray.source == "draft"):
            editors |= {r.user for r in _draft_rows(namespace)}
        if user in editors:
            raise WuxingError(E.ERR_SELF_APPROVAL,
                              f"{user} asked for or edited this {pending.kind}: a second "
                              "person must approve it", {"authors": sorted(editors)})
        if pending.kind == "gray":
            if gray is None:  # cannot happen: both rows are written in one transaction
                raise WuxingError(E.ERR_GRAY_NOT_FOUND, "the request's gray release is gone")
            release = _approve_gray(write, namespace, pending, gray, comment, user)
        else:
            release = _publish_in(write, namespace, pending, kind=pending.kind,
                                  message=pending.message, author=pending.author,
                                  approver=user, comment=comment)
        if pending.kind == "promote":  # a gray release's promote: it is the main one now
            Gray.update(state="promoted", revision=release.revision, closed_by=user,
                        u_time=now()).where(Gray.request == pending.id).execute()
        _audit(namespace, "approve", user, comment, write.revision, request=pending.id,
               kind=pending.kind, gray_id=gray.id if gray else None)
        return release, gray

    (release, gray), _ = run_write(namespace, user, change)
    return _answer(release, gray)


def reject(namespace: str, comment: str, user: str) -> dict[str, Any]:
    """Close the pending request without publishing (its author may withdraw it so); the
    draft stays, editable again. A gray release asked for is ``rejected`` (never served),
    one whose promote this was serves its clients again (``active``)."""
    values.check_namespace(namespace)
    comment = _text(comment, "comment", True)

    def change() -> tuple[Release, Gray | None]:
        _require_review(namespace)
        pending = _pending(namespace)
        if pending is None:
            raise WuxingError(E.ERR_PUBLISH_NOT_PENDING, "no publish waits for approval")
        gray = _gray_of(pending)
        Release.update(state="rejected", approver=user, comment=comment,
                       p_time=now()).where(Release.id == pending.id).execute()
        if gray is not None:
            Gray.update(state="rejected" if pending.kind == "gray" else "active",
                        request=None, closed_by=user if pending.kind == "gray" else "",
                        u_time=now()).where(Gray.id == gray.id).execute()
        _audit(namespace, "reject", user, comment, request=pending.id, kind=pending.kind,
               gray_id=gray.id if gray else None)
        return Release.get_by_id(pending.id), gray

    return _answer(*run_locked(namespace, change))


def _refuse_non_empty_draft(namespace: str) -> None:
    if Draft.select().where(Draft.namespace == namespace).exists():
        raise WuxingError(E.ERR_DRAFT_NOT_EMPTY,
                          "the draft is not empty: publish or draft_discard it first")


def _fill_draft(namespace: str, target: _Snapshot, user: str) -> int:
    """Draft entries turning the live values into ``target`` (items that still exist)."""
    count = 0
    for inst, wanted in snapshot(namespace).items():
        for name, value in wanted.items():
            old = target.get(inst, {})
            if name in old and old[name] != value:
                Draft.create(namespace=namespace, instance_name=inst, item_name=name,
                             value=json.dumps(old[name], ensure_ascii=False), user=user)
                count += 1
    if not count:
        raise WuxingError(E.ERR_DRAFT_EMPTY, "the live values already equal that release")
    return count


def rollback(namespace: str, revision: int, message: str | None,
             user: str) -> dict[str, Any]:
    """A new release with the values of release ``revision`` (for items that still
    exist); with approval on, a publish request like any other."""
    values.check_namespace(namespace)
    message = _text(message, "message", False) or f"rollback to {revision}"
    setting = _require_review(namespace)
    target = _release_values(namespace, revision)
    if setting.approval:
        return _request(namespace, message, user, "rollback", revision, target)

    def change(write: Write) -> Release:
        _require_review(namespace)
        _refuse_if_pending(namespace)
        _refuse_non_empty_draft(namespace)
        if _setting(namespace).approval:  # type: ignore[union-attr]
            raise WuxingError(E.ERR_PARAM_IS_INVALID,
                              "approval was turned on meanwhile: roll back again")
        _fill_draft(namespace, target, user)
        release = _publish_in(write, namespace, None, kind="rollback", message=message,
                              author=user, rollback_of=revision)
        _audit(namespace, "rollback", user, message, write.revision, rollback_of=revision)
        return release

    release, _ = run_write(namespace, user, change)
    return _release_doc(release, False)


def review_log(namespace: str, page_index: int, page_size: int) -> dict[str, Any]:
    values.check_namespace(namespace)
    query = ReviewLog.select().where(ReviewLog.namespace == namespace).order_by(
        ReviewLog.id.desc())
    total, rows = page(query, page_index, page_size)
    return {"total": total,
            "list": [{"id": r.id, "action": r.action, "user": r.user, "comment": r.comment,
                      "revision": r.revision, "detail": json.loads(r.detail),
                      "c_time": json_default(r.c_time)} for r in rows]}


__all__ = ["approve", "checked_draft", "draft_diff", "draft_discard", "draft_get", "draft_set",
           "get_settings", "publish", "reject", "release_diff", "release_get", "release_list",
           "review_log", "reviewed", "rollback", "set_settings", "snapshot"]
