"""demo_inspection: an inspection driven by a state machine, its state kept in wuxing.

The seed's "use wuxing with a state machine": ``start`` creates the inspection's instance in
wuxing, ``advance`` loads its state, fires one event of the python-statemachine machine
(machine.py) and writes the new state back with revision CAS, so two concurrent advances
can never both apply; ``status`` reads it. wuxing is called over HTTP (core never imports
another service) with the framework's ``ServiceClient``, at the settings'
``BUTTERFLY_WUXING_URL`` (else the installed wuxing's port, else http://127.0.0.1:4200);
calls carry this service's operator (else admin) token and the request's reqid.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from statemachine.exceptions import TransitionNotAllowed

from butterfly_common import Refusal, api, retstat, runtime
from butterfly_common.httpclient import ServiceClient, ServiceError, TransportError

from .machine import EVENTS, Inspection, Record

NAMESPACE, SECTION, VERSION = "inspection", "inspection", "v1"
ITEMS = {"s|state": ("pending", "state of the inspection machine"),
         "i|attempts": (0, "checks started so far"),
         "t|log": ("", "one line per transition")}
#: Where wuxing listens when neither BUTTERFLY_WUXING_URL nor its package is known here.
WUXING_URL = "http://127.0.0.1:4200"

#: The statuses these routes answer (wuxing's own for the refusals passed through).
STATUSES = {retstat.ERR_UNAVAILABLE: 424, "ERR_ITEM_UPDATE_FAILED": 409,
            "ERR_TRANSITION_NOT_ALLOWED": 409, "ERR_INSTANCE_IS_NOT_EXIST": 404,
            "ERR_INSTANCE_IS_EXIST": 409}


@dataclass(frozen=True)
class Wuxing:
    """How this app reaches wuxing: one pooled client per settings (``runtime.get_config``),
    at the settings' ``BUTTERFLY_WUXING_URL`` with the operator (else admin) token."""

    client: ServiceClient

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Wuxing:
        settings = runtime.get_settings()  # the parsed form of ``env``
        token = settings.operator_token or settings.admin_token or None
        return cls(ServiceClient("wuxing", token=token, timeout=10.0, default_url=WUXING_URL))


def _call(handler: str, **params: Any) -> dict[str, Any]:
    """``/wuxing/<handler>``'s OK envelope; a refusal is passed on as this call's own, an
    unreachable wuxing is 424 Failed Dependency (the request was fine, the data service it
    needs is not)."""
    try:
        return runtime.get_config(Wuxing).client.call(f"/wuxing/{handler}", **params)
    except TransportError as exc:
        raise Refusal(retstat.ERR_UNAVAILABLE, f"wuxing unreachable: {exc.reason}",
                      http=424) from None
    except ServiceError as exc:
        raise Refusal(exc.stat, exc.reason or exc.stat, http=STATUSES.get(exc.stat)) from None


def _tolerant(handler: str, **params: Any) -> dict[str, Any] | None:
    """:func:`_call`, with wuxing's refusal as None; an unavailable wuxing still refuses."""
    try:
        return _call(handler, **params)
    except Refusal as exc:
        if exc.stat == retstat.ERR_UNAVAILABLE:
            raise
        return None


def _ensure_section() -> None:
    """Create the inspection section on first use (an existing one is fine)."""
    key = {"namespace": NAMESPACE, "section_name": SECTION, "section_version": VERSION}
    found = _tolerant("section_get", **key)
    if found is not None and found["data"]["is_enabled"]:
        return
    _tolerant("section_create", **key)
    for name, (default, description) in ITEMS.items():
        _tolerant("section_item_add", **key, item_name=name, item_default=default,
                  item_description=description)
    _tolerant("section_enable", **key)


@api(write=True, statuses=STATUSES)
def start(req, target: str):
    """Open an inspection of ``target`` (state ``pending``)."""
    _ensure_section()
    _call("instance_create", namespace=NAMESPACE, instance_name=target,
          section_name=SECTION, section_version=VERSION)
    return retstat.OK, {"data": {"target": target, "state": "pending"}}


def _load(target: str) -> tuple[dict[str, Any], int]:
    body = _call("instance_get", namespace=NAMESPACE, instance_name=target)
    return body["data"], body["revision"]


@api(statuses=STATUSES)
def status(req, target: str):
    """The inspection's state, attempts and transition log."""
    data, revision = _load(target)
    return retstat.OK, {"data": {"target": target, "state": data["s|state"],
                                 "attempts": data["i|attempts"], "log": data["t|log"],
                                 "revision": revision}}


@api(write=True, statuses=STATUSES)
def advance(req, target: str, event: str):
    """Fire ``event`` (start, pass, fail, retry, give_up) on the inspection of ``target``.

    The new state is written only if nothing changed the inspection since it was read
    (revision CAS): a concurrent advance gets ERR_ITEM_UPDATE_FAILED and may try again.
    """
    if event not in EVENTS:
        raise Refusal("ERR_EVENT_UNKNOWN", f"event must be one of {', '.join(EVENTS)}")
    data, revision = _load(target)
    record = Record(data["s|state"], data["i|attempts"])
    machine = Inspection(model=record)
    before = record.state
    try:
        machine.send(EVENTS[event])
    except TransitionNotAllowed:
        raise Refusal("ERR_TRANSITION_NOT_ALLOWED",
                      f"{event} is not allowed in state {before}", http=409) from None
    log = (data["t|log"] + f"{before} --{event}--> {record.state}\n")[-20_000:]
    body = _call("instance_update_items", namespace=NAMESPACE, instance_name=target,
                 revision=revision, items={"s|state": record.state,
                                           "i|attempts": record.attempts, "t|log": log})
    return retstat.OK, {"data": {"target": target, "state": record.state,
                                 "attempts": record.attempts,
                                 "revision": body["data"]["revision"]}}
