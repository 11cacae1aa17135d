"""Gray releases and client reports, in a namespace with reviewed publishing.

A **gray release** holds values (``overrides``, ``{instance_name: {item_name: value}}``)
that only the clients its **rule** matches receive, on top of the main release; everyone
else keeps the main release. It comes from the draft (checked as a publish checks it; the
draft is then emptied, so the next gray release can be drafted) or from a published
release (the values in which that release differs from the live ones). A rule matches a
client by its name (``clients``), by any of its labels (``labels``) or by its IP in a CIDR
(``ips``); a client matched by several active gray releases gets the newest. With
``approval`` on, creating one only asks: the gray release is ``pending`` and reaches no
client until a second person approves the request (``publish_approve``, the same request
and rules as a publish: its author and the draft's editors may not; then it is ``active``)
or anyone rejects it (``rejected``, never served; a draft it came from stays). At most
:data:`GRAY_MAX` are held (pending, active or promoting) at once per namespace.
``promote`` publishes the overrides as a main release (with approval on, a publish
request: the gray release stays ``promoting`` and keeps serving its clients until it is
approved or rejected); ``abort`` sends its clients back to the main release. Creating (or
approving a pending one), promoting and aborting each take a namespace revision with a
history row (``kind: gray``), so watchers wake and re-read.

``client_config`` answers the release one client should run; clients report what they
applied or rejected (``client_report``), one row per client and namespace, counted for
``WUXING_CLIENT_TTL`` seconds after the last report.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import re
from collections.abc import Iterable
from typing import Any

from butterfly_common import db
from butterfly_common.protocol import json_default
from butterfly_common.runtime import get_config

from . import errors as E
from . import review, values
from .config import WuxingConfig
from .errors import WuxingError
from .listing import page
from .models import ClientReport, Draft, Gray, Namespace, Release, now
from .revisions import namespace_revision
from .store import Write, reviewed, run_locked, run_transaction, run_write

#: Gray releases running (active or promoting) at once per namespace, as in Nacos.
GRAY_MAX = 10
#: Entries per rule list (clients, labels, ips).
RULE_MAX = 100
#: A client's name, a label; labels one client may carry.
CLIENT_MAX_LEN = 128
LABEL_MAX_LEN = 64
LABELS_MAX = 20
#: A rejected release's error text is cut to this many characters.
ERROR_MAX = 1000
#: Clients counted per namespace (reports of new clients beyond it: ERR_CLIENT_LIMIT).
CLIENTS_MAX = 10_000
#: States in which a gray release serves its clients.
RUNNING = ("active", "promoting")
#: States that take one of the :data:`GRAY_MAX` places (a pending one is counted, so
#: approving it never exceeds the limit).
HELD = ("pending", *RUNNING)
STATES = ("pending", "active", "promoting", "promoted", "aborted", "rejected")

_LABEL = re.compile(r"[A-Za-z0-9_.:@=/-]+")
_CLIENT = re.compile(r"[A-Za-z0-9_.:@-]+")
_Values = dict[str, dict[str, Any]]


# -- checks ----------------------------------------------------------------------------------

def _strings(raw: Iterable[str] | None, what: str, pattern: re.Pattern[str], longest: int,
             most: int) -> list[str]:
    out: list[str] = []
    for value in raw or []:
        if not isinstance(value, str) or not 0 < len(value) <= longest \
                or not pattern.fullmatch(value):
            raise WuxingError(E.ERR_PARAM_IS_INVALID,
                              f"{what}: each must be 1..{longest} characters of "
                              f"{pattern.pattern[1:-2]}")
        if value not in out:
            out.append(value)
    if len(out) > most:
        raise WuxingError(E.ERR_PARAM_IS_INVALID, f"{what}: at most {most}")
    return out


def check_client(client: str) -> str:
    return _strings([client], "client", _CLIENT, CLIENT_MAX_LEN, 1)[0]


def check_labels(labels: Iterable[str] | None) -> list[str]:
    return _strings(labels, "labels", _LABEL, LABEL_MAX_LEN, LABELS_MAX)


def _networks(raw: Iterable[str] | None) -> list[str]:
    out: list[str] = []
    for value in raw or []:
        try:
            if not isinstance(value, str) or len(value) > 64:
                raise ValueError(value)
            net = str(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            raise WuxingError(E.ERR_PARAM_IS_INVALID,
                              f"ips: {str(value)[:64]!r} is not an IP address or CIDR range "
                              "(10.0.0.0/8, 2001:db8::/32)") from None
        if net not in out:
            out.append(net)
    if len(out) > RULE_MAX:
        raise WuxingError(E.ERR_PARAM_IS_INVALID, f"ips: at most {RULE_MAX}")
    return out


def make_rule(clients: Iterable[str] | None, labels: Iterable[str] | None,
              ips: Iterable[str] | None) -> dict[str, list[str]]:
    rule = {"clients": _strings(clients, "clients", _CLIENT, CLIENT_MAX_LEN, RULE_MAX),
            "labels": _strings(labels, "labels", _LABEL, LABEL_MAX_LEN, RULE_MAX),
            "ips": _networks(ips)}
    if not any(rule.values()):
        raise WuxingError(E.ERR_PARAM_IS_INVALID,
                          "a gray release needs a rule: clients, labels or ips")
    return rule


def matches(rule: dict[str, list[str]], client: str | None, labels: Iterable[str],
            ip: str | None) -> bool:
    """True when the client is named, carries one of the labels or its IP is in a range."""
    if client and client in rule.get("clients", []):
        return True
    if set(labels) & set(rule.get("labels", [])):
        return True
    if ip and rule.get("ips"):
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(addr in ipaddress.ip_network(net) for net in rule["ips"])
    return False


# -- documents -------------------------------------------------------------------------------

def _live_since() -> dt.datetime:
    return now() - dt.timedelta(seconds=get_config(WuxingConfig).client_ttl)


def _counts(namespace: str, gray_id: int) -> dict[str, int]:
    live = ClientReport.select().where((ClientReport.namespace == namespace)
                                       & (ClientReport.u_time >= _live_since()))
    return {"applied": live.where(ClientReport.applied_gray == gray_id).count(),
            "rejected": live.where((ClientReport.gray == gray_id)
                                   & (ClientReport.status == "rejected")).count()}


def _doc(row: Gray, detail: bool = True) -> dict[str, Any]:
    doc = {"id": row.id, "namespace": row.namespace, "state": row.state,
           "source": row.source, "source_revision": row.source_revision,
           "base_revision": row.base_revision, "rule": json.loads(row.rule),
           "message": row.message, "author": row.author, "request": row.request,
           "revision": row.revision, "closed_by": row.closed_by,
           "c_time": json_default(row.c_time), "u_time": json_default(row.u_time),
           "clients": _counts(row.namespace, row.id)}
    if detail:
        doc["overrides"] = json.loads(row.overrides)
    return doc


def _find(namespace: str, gray_id: int) -> Gray:
    values.in_range(gray_id, E.ERR_GRAY_NOT_FOUND, "gray_id")
    row = Gray.get_or_none((Gray.namespace == namespace) & (Gray.id == gray_id))
    if row is None:
        raise WuxingError(E.ERR_GRAY_NOT_FOUND,
                          f"namespace {namespace} has no gray release {gray_id}")
    return row


def _running(namespace: str) -> list[Gray]:
    return list(Gray.select().where((Gray.namespace == namespace)
                                    & Gray.state.in_(list(RUNNING)))
                .order_by(Gray.id.desc()))


def main_revision(namespace: str) -> int:
    """The main release's revision: the latest published release in a reviewed namespace,
    else the namespace's revision."""
    if reviewed(namespace):
        latest = review._latest(namespace)
        if latest is not None and latest.revision is not None:
            return int(latest.revision)
    return namespace_revision(namespace)[0]


def _overlay(base: _Values, overrides: _Values) -> _Values:
    """``base`` with the overrides of items it still has."""
    out = {inst: dict(items) for inst, items in base.items()}
    for inst, items in overrides.items():
        if inst in out:
            for name, value in items.items():
                if name in out[inst]:
                    out[inst][name] = value
    return out


def _differing(target: _Values, live: _Values) -> _Values:
    out: _Values = {}
    for inst, items in target.items():
        for name, value in items.items():
            if name in live.get(inst, {}) and live[inst][name] != value:
                out.setdefault(inst, {})[name] = value
    return out


# -- create / promote / abort ----------------------------------------------------------------

def _refuse_full(namespace: str) -> None:
    held = Gray.select().where((Gray.namespace == namespace)
                               & Gray.state.in_(list(HELD))).count()
    if held >= GRAY_MAX:
        raise WuxingError(E.ERR_GRAY_LIMIT,
                          f"{held} gray releases run or wait for approval in {namespace}, "
                          f"at most {GRAY_MAX}: promote, abort or reject one first",
                          {"limit": GRAY_MAX})


def _overrides(namespace: str, revision: int | None) -> _Values:
    """The values of the draft (checked as a publish checks them) or of release
    ``revision`` that differ from the live ones; none: ERR_DRAFT_EMPTY."""
    live = review.snapshot(namespace)
    if revision is None:
        planned: _Values = {}
        for entry, value in review.checked_draft(namespace):
            planned.setdefault(entry.instance_name, {})[entry.item_name] = value
        overrides = _differing(planned, live)
    else:
        overrides = _differing(review._release_values(namespace, revision), live)
    if not overrides:
        raise WuxingError(E.ERR_DRAFT_EMPTY,
                          "nothing differs from the main release: no gray release")
    return overrides


def create(namespace: str, clients: list[str] | None, labels: list[str] | None,
           ips: list[str] | None, revision: int | None, message: str | None,
           user: str) -> dict[str, Any]:
    """A gray release of the draft (``revision`` None) or of release ``revision``; with
    approval on, a request for one (``pending`` until approved or rejected)."""
    values.check_namespace(namespace)
    rule = make_rule(clients, labels, ips)
    message = review._text(message, "message", False)
    if revision is not None:
        values.in_range(revision, E.ERR_RELEASE_NOT_FOUND, "revision")
    if review._require_review(namespace).approval:
        return _create_request(namespace, rule, revision, message, user)

    def change(write: Write) -> Gray:
        setting = review._require_review(namespace)
        review._refuse_if_pending(namespace)
        if setting.approval:  # turned on meanwhile: it would need a second person
            raise WuxingError(E.ERR_PARAM_IS_INVALID,
                              "approval was turned on meanwhile: create it again")
        _refuse_full(namespace)
        overrides = _overrides(namespace, revision)
        if revision is None:
            Draft.delete().where(Draft.namespace == namespace).execute()
        row = Gray.create(namespace=namespace, state="active",
                          source="draft" if revision is None else "release",
                          source_revision=revision, base_revision=main_revision(namespace),
                          rule=json.dumps(rule), message=message, author=user,
                          overrides=json.dumps(overrides, ensure_ascii=False))
        write.record("gray", "gray_create", value_new={"gray_id": row.id, "rule": rule})
        review._audit(namespace, "gray_create", user, message, write.revision,
                      gray_id=row.id, rule=rule, source_revision=revision)
        return row

    row, _ = run_write(namespace, user, change)
    return _doc(row)


def _create_request(namespace: str, rule: dict[str, list[str]], revision: int | None,
                    message: str, user: str) -> dict[str, Any]:
    """A ``pending`` gray release and its publish request (``kind: gray``): it reaches no
    client - and takes no revision - until a second person approves. A draft it comes from
    stays, frozen like a publish request's, and is emptied at approval."""
    def change() -> Gray:
        setting = review._require_review(namespace)
        review._refuse_if_pending(namespace)
        if not setting.approval:
            raise WuxingError(E.ERR_PARAM_IS_INVALID,
                              "approval was turned off meanwhile: create it again")
        _refuse_full(namespace)
        overrides = _overrides(namespace, revision)
        text = message or "gray release"
        request = Release.create(namespace=namespace, state="pending", kind="gray",
                                 message=text, author=user)
        row = Gray.create(namespace=namespace, state="pending",
                          source="draft" if revision is None else "release",
                          source_revision=revision, base_revision=main_revision(namespace),
                          rule=json.dumps(rule), message=message, author=user,
                          request=request.id,
                          overrides=json.dumps(overrides, ensure_ascii=False))
        review._audit(namespace, "request", user, text, kind="gray", gray_id=row.id,
                      rule=rule, source_revision=revision)
        return row

    return _doc(run_locked(namespace, change))


def _check_running(namespace: str, gray_id: int) -> Gray:
    row = _find(namespace, gray_id)
    if row.state == "pending":
        raise WuxingError(E.ERR_PUBLISH_PENDING,
                          f"gray release {gray_id} waits for approval: approve or reject "
                          "its request (publish_approve / publish_reject) first")
    if row.state == "promoting":
        raise WuxingError(E.ERR_PUBLISH_PENDING,
                          f"gray release {gray_id} waits for its promote to be approved: "
                          "approve or reject that first")
    if row.state != "active":
        raise WuxingError(E.ERR_GRAY_NOT_ACTIVE, f"gray release {gray_id} is {row.state}")
    return row


def promote(namespace: str, gray_id: int, message: str | None, user: str) -> dict[str, Any]:
    """Publish the gray release's values as a main release for everyone (with approval on,
    ask for it). Needs an empty draft and no publish waiting."""
    values.check_namespace(namespace)
    message = review._text(message, "message", False)
    setting = review._require_review(namespace)
    if setting.approval:
        return _promote_request(namespace, gray_id, message, user)

    def change(write: Write) -> Gray:
        review._require_review(namespace)
        row = _check_running(namespace, gray_id)
        review._refuse_if_pending(namespace)
        review._refuse_non_empty_draft(namespace)
        text = message or f"promote gray release {gray_id}"
        filled = _fill(namespace, row, user)
        revision: int | None = main_revision(namespace)
        if filled:
            release = review._publish_in(write, namespace, None, kind="promote",
                                         message=text, author=user)
            revision = release.revision
        Gray.update(state="promoted", revision=revision, closed_by=user,
                    u_time=now()).where(Gray.id == row.id).execute()
        write.record("gray", "gray_promote", value_new={"gray_id": row.id})
        review._audit(namespace, "gray_promote", user, text, write.revision,
                      gray_id=row.id, release=revision)
        return Gray.get_by_id(row.id)

    row, _ = run_write(namespace, user, change)
    return _doc(row)


def _fill(namespace: str, row: Gray, user: str) -> int:
    """Draft entries turning the live values into the gray release's (0: none differs)."""
    try:
        return review._fill_draft(namespace, json.loads(row.overrides), user)
    except WuxingError as exc:
        if exc.stat != E.ERR_DRAFT_EMPTY:
            raise
        return 0


def _promote_request(namespace: str, gray_id: int, message: str, user: str) -> dict[str, Any]:
    def change() -> Gray:
        review._require_review(namespace)
        row = _check_running(namespace, gray_id)
        review._refuse_if_pending(namespace)
        review._refuse_non_empty_draft(namespace)
        text = message or f"promote gray release {gray_id}"
        if not _fill(namespace, row, user):
            raise WuxingError(E.ERR_DRAFT_EMPTY,
                              "the main release already holds these values: abort the gray "
                              "release instead")
        request = Release.create(namespace=namespace, state="pending", kind="promote",
                                 message=text, author=user)
        Gray.update(state="promoting", request=request.id, u_time=now()).where(
            Gray.id == row.id).execute()
        review._audit(namespace, "request", user, text, kind="promote", gray_id=row.id)
        return Gray.get_by_id(row.id)

    return _doc(run_locked(namespace, change))


def abort(namespace: str, gray_id: int, comment: str | None, user: str) -> dict[str, Any]:
    """End the gray release: its clients go back to the main release."""
    values.check_namespace(namespace)
    comment = review._text(comment, "comment", False)

    def change(write: Write) -> Gray:
        row = _check_running(namespace, gray_id)
        Gray.update(state="aborted", closed_by=user, u_time=now()).where(
            Gray.id == row.id).execute()
        write.record("gray", "gray_abort", value_new={"gray_id": row.id})
        review._audit(namespace, "gray_abort", user, comment, write.revision,
                      gray_id=row.id)
        return Gray.get_by_id(row.id)

    row, _ = run_write(namespace, user, change)
    return _doc(row)


def get(namespace: str, gray_id: int) -> dict[str, Any]:
    values.check_namespace(namespace)
    return _doc(_find(namespace, gray_id))


def list_(namespace: str, state: str | None, page_index: int,
          page_size: int) -> dict[str, Any]:
    values.check_namespace(namespace)
    query = Gray.select().where(Gray.namespace == namespace)
    if state is not None:
        if state not in STATES:
            raise WuxingError(E.ERR_PARAM_IS_INVALID,
                              f"state must be one of {', '.join(STATES)}")
        query = query.where(Gray.state == state)
    total, rows = page(query.order_by(Gray.id.desc()), page_index, page_size)
    return {"total": total, "limit": GRAY_MAX, "list": [_doc(r, False) for r in rows]}


# -- what a client runs, what it reports -----------------------------------------------------

def client_config(namespace: str, client: str | None, labels: list[str] | None,
                  ip: str | None) -> dict[str, Any]:
    """The values the client should run: the main release, or the newest running gray
    release whose rule matches it."""
    values.check_namespace(namespace)
    name = check_client(client) if client else None
    tags = check_labels(labels)
    with db.database.atomic():  # one consistent read of values, releases and grays
        current = namespace_revision(namespace)[0]
        main = main_revision(namespace)
        chosen = next((g for g in _running(namespace)
                       if matches(json.loads(g.rule), name, tags, ip)), None)
        snap = review.snapshot(namespace)
    if chosen is not None:
        snap = _overlay(snap, json.loads(chosen.overrides))
    return {"namespace": namespace, "revision": main,
            "gray_id": chosen.id if chosen else None,
            "namespace_revision": current, "client": name, "ip": ip, "labels": tags,
            "values": snap}


def report(namespace: str, client: str, status: str, revision: int, gray_id: int | None,
           error: str | None, labels: list[str] | None, ip: str | None) -> dict[str, Any]:
    """Record that ``client`` applied (or rejected, with ``error``) release ``revision``
    (``gray_id``: a gray release of it)."""
    values.check_namespace(namespace)
    name = check_client(client)
    tags = check_labels(labels)
    if status not in ("applied", "rejected"):
        raise WuxingError(E.ERR_PARAM_IS_INVALID, "status must be applied or rejected")
    values.in_range(revision, E.ERR_RELEASE_NOT_FOUND, "revision")
    text = (error or "").strip()[:ERROR_MAX] if status == "rejected" else ""
    def body() -> ClientReport:
        if not Namespace.select().where(Namespace.namespace == namespace).exists():
            raise WuxingError(E.ERR_NAMESPACE_IS_INVALID,
                              f"namespace {namespace} does not exist")
        if revision > namespace_revision(namespace)[0]:
            raise WuxingError(E.ERR_RELEASE_NOT_FOUND,
                              f"namespace {namespace} has no revision {revision} yet")
        if gray_id is not None:
            _find(namespace, gray_id)
        key = (ClientReport.namespace == namespace) & (ClientReport.client == name)
        if not ClientReport.select().where(key).exists():
            fresh = ClientReport.u_time >= _live_since()
            ClientReport.delete().where((ClientReport.namespace == namespace)
                                        & ~fresh).execute()
            known = ClientReport.select().where((ClientReport.namespace == namespace)
                                                & fresh).count()
            if known >= CLIENTS_MAX:
                raise WuxingError(E.ERR_CLIENT_LIMIT,
                                  f"{known} clients report in {namespace}, at most "
                                  f"{CLIENTS_MAX}", {"limit": CLIENTS_MAX})
            ClientReport.insert(namespace=namespace, client=name, status=status
                                ).on_conflict_ignore().execute()
        fields: dict[str, Any] = {"ip": (ip or "")[:64], "labels": json.dumps(tags),
                                  "status": status, "revision": revision, "gray": gray_id,
                                  "error": text, "u_time": now()}
        if status == "applied":
            fields.update(applied_revision=revision, applied_gray=gray_id)
        ClientReport.update(**fields).where(key).execute()
        return ClientReport.get(key)

    return _client_doc(run_transaction(namespace, body))


def _client_doc(row: ClientReport) -> dict[str, Any]:
    return {"client": row.client, "ip": row.ip, "labels": json.loads(row.labels),
            "running": None if row.applied_revision is None else
            {"revision": row.applied_revision, "gray_id": row.applied_gray},
            "last_report": {"status": row.status, "revision": row.revision,
                            "gray_id": row.gray, "error": row.error},
            "u_time": json_default(row.u_time)}


def client_list(namespace: str, revision: int | None, gray_id: int | None,
                status: str | None, page_index: int, page_size: int) -> dict[str, Any]:
    """Clients that reported within the TTL, by name; ``revision`` / ``gray_id``: those
    running that release (``gray_id`` 0: the main release itself), ``status``: by their
    last report."""
    values.check_namespace(namespace)
    query = ClientReport.select().where((ClientReport.namespace == namespace)
                                        & (ClientReport.u_time >= _live_since()))
    if revision is not None:
        values.in_range(revision, E.ERR_PARAM_IS_INVALID, "revision")
        query = query.where(ClientReport.applied_revision == revision)
    if gray_id is not None:
        values.in_range(gray_id, E.ERR_PARAM_IS_INVALID, "gray_id")
        query = query.where(ClientReport.applied_gray.is_null() if gray_id == 0
                            else ClientReport.applied_gray == gray_id)
    if status is not None:
        if status not in ("applied", "rejected"):
            raise WuxingError(E.ERR_PARAM_IS_INVALID, "status must be applied or rejected")
        query = query.where(ClientReport.status == status)
    total, rows = page(query.order_by(ClientReport.client), page_index, page_size)
    return {"total": total, "ttl": get_config(WuxingConfig).client_ttl,
            "list": [_client_doc(r) for r in rows]}


def client_stats(namespace: str) -> dict[str, Any]:
    """Per release (main revision, gray release id or null): how many clients run it
    (``applied``) and how many rejected it, counting reports within the TTL."""
    values.check_namespace(namespace)
    live = ClientReport.select().where((ClientReport.namespace == namespace)
                                       & (ClientReport.u_time >= _live_since()))
    stats: dict[tuple[int, int | None], dict[str, Any]] = {}

    def entry(revision: int, gray: int | None) -> dict[str, Any]:
        return stats.setdefault((revision, gray), {"revision": revision, "gray_id": gray,
                                                   "applied": 0, "rejected": 0})

    for row in live:
        if row.applied_revision is not None:
            entry(row.applied_revision, row.applied_gray)["applied"] += 1
        if row.status == "rejected" and row.revision is not None:
            entry(row.revision, row.gray)["rejected"] += 1
    ordered = sorted(stats.values(), key=lambda s: (-s["revision"], s["gray_id"] or 0))
    return {"namespace": namespace, "clients": live.count(),
            "ttl": get_config(WuxingConfig).client_ttl, "releases": ordered}


def prune_clients() -> int:
    """Delete client reports older than the TTL (every namespace); rows deleted."""
    return int(ClientReport.delete().where(ClientReport.u_time < _live_since()).execute())
