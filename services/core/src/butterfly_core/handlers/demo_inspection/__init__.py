"""demo_inspection: an inspection driven by a state machine, its state kept in wuxing.

The seed's "use wuxing with a state machine": ``start`` creates the inspection's instance in
wuxing, ``advance`` loads its state, fires one event of the python-statemachine machine
(machine.py) and writes the new state back with revision CAS, so two concurrent advances
can never both apply; ``status`` reads it. wuxing is called over HTTP (core never imports
another service); its URL is ``BUTTERFLY_WUXING_URL`` (default http://127.0.0.1:4200) and
writes carry this service's operator (else admin) token.
"""

from __future__ import annotations

import os
from typing import Any

import requests
from statemachine.exceptions import TransitionNotAllowed

from butterfly_common import Refusal, api, retstat, runtime

from .machine import EVENTS, Inspection, Record

NAMESPACE, SECTION, VERSION = "inspection", "inspection", "v1"
ITEMS = {"s|state": ("pending", "state of the inspection machine"),
         "i|attempts": (0, "checks started so far"),
         "t|log": ("", "one line per transition")}


def _call(handler: str, **params: Any) -> dict[str, Any]:
    base = (os.environ.get("BUTTERFLY_WUXING_URL") or "http://127.0.0.1:4200").rstrip("/")
    settings = runtime.get_settings()
    token = getattr(settings, "operator_token", "") or settings.admin_token
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        reply = requests.post(f"{base}/wuxing/{handler}", json=params, headers=headers,
                              timeout=10)
        body = reply.json()
    except (requests.RequestException, ValueError) as exc:
        # 424 Failed Dependency: the request was fine, the data service it needs is not
        raise Refusal(retstat.ERR_UNAVAILABLE, f"wuxing unreachable: {exc}", http=424) from None
    if body.get("stat") != retstat.OK:
        body["x-reason"] = reply.headers.get("x-reason", "")
    return body


def _ensure_section() -> None:
    """Create the inspection section on first use (an existing one is fine)."""
    found = _call("section_get", namespace=NAMESPACE, section_name=SECTION,
                  section_version=VERSION)
    if found["stat"] == retstat.OK and found["data"]["is_enabled"]:
        return
    key = {"namespace": NAMESPACE, "section_name": SECTION, "section_version": VERSION}
    _call("section_create", **key)
    for name, (default, description) in ITEMS.items():
        _call("section_item_add", **key, item_name=name, item_default=default,
              item_description=description)
    _call("section_enable", **key)


#: The statuses these routes answer (wuxing's own for the refusals passed through).
STATUSES = {retstat.ERR_UNAVAILABLE: 424, "ERR_ITEM_UPDATE_FAILED": 409,
            "ERR_TRANSITION_NOT_ALLOWED": 409, "ERR_INSTANCE_IS_NOT_EXIST": 404,
            "ERR_INSTANCE_IS_EXIST": 409}


def _refuse(body: dict[str, Any]) -> None:
    raise Refusal(body["stat"], body.get("x-reason") or body["stat"],
                  http=STATUSES.get(body["stat"]))


@api(write=True, statuses=STATUSES)
def start(req, target: str):
    """Open an inspection of ``target`` (state ``pending``)."""
    _ensure_section()
    body = _call("instance_create", namespace=NAMESPACE, instance_name=target,
                 section_name=SECTION, section_version=VERSION)
    if body["stat"] != retstat.OK:
        _refuse(body)
    return retstat.OK, {"data": {"target": target, "state": "pending"}}


def _load(target: str) -> tuple[dict[str, Any], int]:
    body = _call("instance_get", namespace=NAMESPACE, instance_name=target)
    if body["stat"] != retstat.OK:
        _refuse(body)
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
    if body["stat"] != retstat.OK:
        _refuse(body)
    return retstat.OK, {"data": {"target": target, "state": record.state,
                                 "attempts": record.attempts,
                                 "revision": body["data"]["revision"]}}
