"""Event triggers: an event published to ``/xingqiao/trigger`` for a trigger starts one
flow of the trigger's type, with the event as its ``job_extra``.

Exactly one flow per event id: the flow's ``job_name`` (unique in ``workflow_job``) is
derived from the trigger's name and the event id, so a second delivery of the same event
(published twice, or redelivered by the at-least-once queue after a crash) fails the
insert and answers the flow the first one started. The event id is the publisher's
``event_id``, else the queue message's id (so a redelivered message is the same event).
Writes are audited: ``created_by`` / ``updated_by`` on the row and a line on the
``butterfly.xingqiao.audit`` log.
"""

from __future__ import annotations

import hashlib
import logging
import re
from typing import Any

import peewee

from butterfly_common import Refusal
from butterfly_common.middleware import Middleware
from butterfly_common.mq import Message
from butterfly_common.request import Request

from . import engine, flowtypes, operations, store
from .models import Job, Trigger, now_dt

log = logging.getLogger("butterfly.xingqiao")
audit_log = logging.getLogger("butterfly.xingqiao.audit")

TOPIC = "/xingqiao/trigger"
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
EVENT_ID_MAX = 200

ERR_TRIGGER_EXIST = "ERR_TRIGGER_EXIST"
ERR_TRIGGER_NOT_EXIST = "ERR_TRIGGER_NOT_EXIST"
ERR_TRIGGER_DISABLED = "ERR_TRIGGER_DISABLED"
HTTP_CODES = {ERR_TRIGGER_EXIST: 409, ERR_TRIGGER_NOT_EXIST: 404, ERR_TRIGGER_DISABLED: 409}

#: where the consumer's message id waits for the handler (``req.context``)
MSG_ID = "xingqiao.msg_id"


class MessageIds(Middleware):
    """Hands a queued call's message id to the handler: the default event id of a
    trigger event, the same on every delivery of that message."""

    def before_process(self, msg: Message, req: Request) -> None:
        req.context[MSG_ID] = msg.id


def valid_name(name: str) -> bool:
    """1..64 of letters, digits, ``_ . -``, starting with a letter or digit."""
    return NAME_RE.fullmatch(name) is not None


def flow_key(name: str, event_id: str) -> str:
    """The flow's ``job_name`` for this event of this trigger (44 chars, fits 64)."""
    digest = hashlib.sha256(f"{name}\n{event_id}".encode()).hexdigest()
    return f"trg:{digest[:40]}"


def row_of(trigger: Trigger) -> dict[str, Any]:
    return {"name": trigger.name, "topic": TOPIC, "job_type": trigger.job_type,
            "job_version": trigger.job_version or None,
            "job_namespace": trigger.job_namespace, "description": trigger.description,
            "enabled": bool(trigger.enabled), "fired": int(trigger.fired),
            "dropped": int(trigger.dropped), "created_by": trigger.created_by,
            "updated_by": trigger.updated_by, "c_time": trigger.c_time,
            "u_time": trigger.u_time}


def get(name: str) -> Trigger:
    trigger = Trigger.get_or_none(Trigger.name == name)
    if trigger is None:
        raise Refusal(ERR_TRIGGER_NOT_EXIST, f"no trigger named {name!r}")
    return trigger


def _check_type(job_type: str, job_version: str | None) -> None:
    """The flow type exists now (and the pinned version): a typo is refused at create,
    not at the first event."""
    loaded = flowtypes.plugins()
    if job_type in loaded.types:
        digest = loaded.hashes.get(job_type, "")
        if job_version is not None and job_version != digest:
            raise Refusal(operations.ERR_JOB_VERSION_NOT_EXIST, f"flow type {job_type} is "
                          f"plugin version {digest}, not {job_version!r}")
        return
    if flowtypes.latest_json_type(job_type) is None:
        raise Refusal(operations.ERR_JOB_TYPE_NOT_EXISTS, f"no flow type {job_type!r}")
    if job_version is not None:
        number = job_version.strip()
        if not number.isdigit() or not 0 < int(number) < 2**31 \
                or flowtypes.json_type_version(job_type, int(number)) is None:
            raise Refusal(operations.ERR_JOB_VERSION_NOT_EXIST,
                          f"flow type {job_type} has no version {job_version!r}")


def create(name: str, job_type: str, job_namespace: str, job_version: str | None,
           description: str, enabled: bool, operator: str) -> dict[str, Any]:
    """Store a new trigger (names are unique: ERR_TRIGGER_EXIST)."""
    _check_type(job_type, job_version)
    try:
        trigger = store.busy_retry(lambda: Trigger.create(
            name=name, job_type=job_type, job_version=job_version or "",
            job_namespace=job_namespace, description=description, enabled=enabled,
            created_by=operator, updated_by=operator))
    except peewee.IntegrityError:
        raise Refusal(ERR_TRIGGER_EXIST, f"a trigger named {name!r} exists") from None
    audit_log.warning("trigger_create %s by %s: %s (version %s) in %s, enabled %s", name,
                      operator, job_type, job_version or "newest", job_namespace, enabled)
    return row_of(trigger)


def set_enabled(name: str, enabled: bool, operator: str) -> dict[str, Any]:
    """Enable or disable a trigger (idempotent: answers its row either way)."""
    get(name)
    store.busy_retry(Trigger.update(enabled=enabled, updated_by=operator, u_time=now_dt())
                     .where(Trigger.name == name).execute)
    audit_log.warning("trigger_%s %s by %s", "enable" if enabled else "disable", name,
                      operator)
    return row_of(get(name))


def delete(name: str, operator: str) -> dict[str, Any]:
    """Delete a trigger; the flows it started stay."""
    trigger = get(name)
    store.busy_retry(Trigger.delete().where(Trigger.name == name).execute)
    audit_log.warning("trigger_delete %s by %s", name, operator)
    return {"name": name, "fired": int(trigger.fired), "dropped": int(trigger.dropped)}


def listing() -> list[dict[str, Any]]:
    return [row_of(t) for t in Trigger.select().order_by(Trigger.name)]


def fire(name: str, event: Any, event_id: str, reqid: str) -> dict[str, Any]:
    """Start the flow of this event, or answer the one an earlier delivery started
    (``created: false``). A disabled trigger drops the event (counted in ``dropped``)."""
    trigger = get(name)
    if not trigger.enabled:
        store.busy_retry(Trigger.update(dropped=Trigger.dropped + 1)
                         .where(Trigger.name == name).execute)
        log.info("trigger %s is disabled: event %s dropped", name, event_id)
        raise Refusal(ERR_TRIGGER_DISABLED, f"trigger {name} is disabled: event "
                      f"{event_id!r} dropped")
    key = flow_key(name, event_id)
    try:
        job_id = operations.create_job(
            job_namespace=trigger.job_namespace, job_type=trigger.job_type, job_name=key,
            job_extra=event, job_timeout=None, reqid=reqid, operator=f"trigger:{name}",
            client="queue", job_version=trigger.job_version or None)
    except Refusal as refusal:
        if refusal.stat != operations.ERR_JOB_EXIST:
            raise
        job = Job.get_or_none(Job.job_name == key)
        if job is None:  # deleted meanwhile by an operator: the event is not run again
            raise
        engine.advance(job.job_id)  # the first delivery may have died before dispatching
        return {"trigger": name, "event_id": event_id, "job_id": int(job.job_id),
                "created": False}
    store.busy_retry(Trigger.update(fired=Trigger.fired + 1)
                     .where(Trigger.name == name).execute)
    return {"trigger": name, "event_id": event_id, "job_id": job_id, "created": True}
