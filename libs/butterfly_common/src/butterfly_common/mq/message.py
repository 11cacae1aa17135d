"""The message record as Python sees it, and message ids.

Scripts return a record as a flat array of values in :data:`keys.FIELDS` order (no field
names on the wire); :meth:`Message.from_values` turns that into a :class:`Message`.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any, NamedTuple

from .. import nesting
from .keys import FIELDS
from .progress import parse as parse_progress

QUEUED = "queued"
DELAYED = "delayed"
STARTED = "started"
FINISHED = "finished"
FAILED = "failed"
STATUSES = (QUEUED, DELAYED, STARTED, FINISHED, FAILED)

_NFIELDS = len(FIELDS)
#: The order :meth:`Message.from_values` unpacks a record in; it must be FIELDS'.
_UNPACKED = ("id", "topic", "data", "status", "attempts", "max_retries", "timeout",
             "result_ttl", "failure_ttl", "created_at", "enqueued_at", "started_at",
             "ended_at", "worker", "result", "error", "cost", "reqid", "token", "notify",
             "progress", "error_kind", "priority", "dedup_key", "dedup_mode", "trace",
             "group", "batch")
if _UNPACKED != FIELDS:  # a field added to keys.FIELDS must be unpacked here too
    raise ImportError("mq.message unpacks records in another order than keys.FIELDS")


class ErrorKind(StrEnum):
    """Why an attempt failed: the record's ``error_kind``, set with its ``error``.

    A closed set, so a reader (xingqiao telling a timeout from a crash, a dashboard)
    branches on a value instead of matching the wording of ``error``, which is free text
    a handler's own exception can imitate. Set by the one script that writes ``error``
    (``fail.lua``, ``reap.lua``); a claim clears it, so it always describes the latest
    attempt: a retry scheduled (``delayed``) or the final ``failed`` record.
    """

    #: The handler ran past the message's ``timeout`` and was interrupted by its consumer.
    TIMEOUT = "timeout"
    #: The handler (or the gateway around it) raised: ``ERR_SERVER_EXCEPTION``, retried
    #: while attempts remain.
    EXCEPTION = "exception"
    #: The call was refused as ``ERR_BAD_PARAMS``: dead-lettered at once, never retried
    #: (other refusals are answers and finish the message).
    REFUSED = "refused"
    #: The consumer vanished: the lease lapsed again and again until ``reap`` gave up
    #: (``attempts > max_retries + lost_grace``).
    LOST = "lost"
    #: The handler answered, but its outcome could not be stored (not JSON-able ...).
    UNSTORABLE = "unstorable"
    #: Taken out of the queue before it ran (again) by a bulk ``cancel`` (see ``bulk.py``).
    CANCELED = "canceled"


def _error_kind(value: str | None) -> str | None:
    """The stored kind: an :class:`ErrorKind` when known, a newer writer's unknown value
    kept as is (a reader must not lose it), None when unset."""
    if not value:
        return None
    try:
        return ErrorKind(value)
    except ValueError:
        return value


def new_id() -> str:
    """A fresh message id: 24 upper-case hex digits, time-ordered.

    12 digits of the publisher's clock in ms (good until year 10889) then 48 random bits,
    so ids sort by publish time across publishers (to clock skew) and two publishers
    colliding within one millisecond has odds of ~2**-48.
    """
    return f"{time.time_ns() // 1_000_000:012X}{secrets.randbits(48):012X}"


def new_ids(n: int) -> list[str]:
    """``n`` fresh ids as :func:`new_id` makes them, from one read of the OS's random
    source (``publish_many``: one system call per batch instead of one per message)."""
    ms = f"{time.time_ns() // 1_000_000:012X}"
    raw = os.urandom(6 * n)
    return [ms + raw[6 * i:6 * i + 6].hex().upper() for i in range(n)]


class PublishResult(NamedTuple):
    """What :meth:`Broker.publish` did: ``created`` is False for a repeated ``msg_id``.

    With a ``dedup_key``, ``dedup`` says which message stands and why:
    ``{"outcome": "new" | "replaced" | "duplicate" | "throttled", "msg_id": <standing id>}``
    plus ``"replaced": <id>`` (the message the publish took the place of) for
    ``replaced``; ``msg_id`` and ``status`` are then the standing message's. None without
    a dedup key."""

    msg_id: str
    created: bool
    status: str
    dedup: dict[str, str] | None = None


def _loads(text: str) -> Any:
    """A stored JSON column; one that cannot be decoded (too deep to parse) becomes a
    marker the handler binding refuses, instead of an exception that loses the message."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        return {"_undecodable": f"{type(exc).__name__}: {exc}"[:200]}


def _ms_to_s(value: str | None) -> float | None:
    return int(value) / 1000.0 if value not in (None, "") else None


def _int(value: str | None, default: int = 0) -> int:
    return int(value) if value not in (None, "") else default


@dataclass(slots=True)
class Message:
    """One message record. Times are epoch seconds, durations seconds (``None`` = unset)."""

    id: str
    topic: str
    data: dict[str, Any] = field(default_factory=dict)
    status: str = QUEUED
    attempts: int = 0
    max_retries: int = 0
    timeout: float = 0.0
    result_ttl: float = 0.0
    failure_ttl: float = 0.0
    created_at: float | None = None
    enqueued_at: float | None = None
    started_at: float | None = None
    ended_at: float | None = None
    worker: str = ""
    result: dict[str, Any] | None = None
    error: str = ""
    cost: float = 0.0
    reqid: str = ""
    token: int = 0
    #: Topic told ``{msg_id, topic, status, stat, cost}`` when the message ends ("" = none).
    notify: str = ""
    #: How far the running (or last) attempt got: ``{"done", "total", "note"}`` as its
    #: handler reported with ``req.progress``; None when it reported nothing.
    progress: dict[str, Any] | None = None
    #: Why the latest attempt failed (an :class:`ErrorKind` value); None while it has
    #: not failed. ``error`` says it in words, this is what a program should branch on.
    error_kind: str | None = None
    #: Claim order: higher first (-100..100), FIFO within one priority; 0 the default.
    priority: int = 0
    #: The caller's deduplication key and mode ("" when published without).
    dedup_key: str = ""
    dedup_mode: str = ""
    #: The W3C ``traceparent`` of the publish (its producer span), when tracing was on:
    #: written once by the publish script, so the consumer's span links to it.
    trace: str = ""
    #: The concurrency group it was published in ("" without): see ``limits.py``.
    group: str = ""
    #: The batch it belongs to ("" without): its end is counted there (see ``batch.py``).
    batch: str = ""

    @classmethod
    def from_values(cls, values: list[Any]) -> Message:
        """Build from an HMGET-ordered list (see :data:`keys.FIELDS`, which
        :data:`_UNPACKED` mirrors: every claimed message comes through here)."""
        (id_, topic, data, status, attempts, max_retries, timeout, result_ttl, failure_ttl,
         created_at, enqueued_at, started_at, ended_at, worker, result, error, cost, reqid,
         token, notify, progress, error_kind, priority, dedup_key, dedup_mode,
         trace, group, batch) = values
        return cls(
            id=id_, topic=topic, data=_loads(data or "{}"), status=status or "",
            attempts=_int(attempts), max_retries=_int(max_retries),
            timeout=_ms_to_s(timeout) or 0.0, result_ttl=_ms_to_s(result_ttl) or 0.0,
            failure_ttl=_ms_to_s(failure_ttl) or 0.0, created_at=_ms_to_s(created_at),
            enqueued_at=_ms_to_s(enqueued_at), started_at=_ms_to_s(started_at),
            ended_at=_ms_to_s(ended_at), worker=worker or "",
            result=_loads(result) if result else None, error=error or "",
            cost=float(cost or 0.0), reqid=reqid or "", token=_int(token),
            notify=notify or "",
            # most records have neither: no call for them
            progress=parse_progress(progress) if progress else None,
            error_kind=_error_kind(error_kind) if error_kind else None,
            priority=_int(priority), dedup_key=dedup_key or "",
            dedup_mode=dedup_mode or "", trace=trace or "", group=group or "",
            batch=batch or "",
        )

    @classmethod
    def many(cls, flat: list[Any]) -> list[Message]:
        """Split a script's flat reply (records back to back) into messages.

        A record whose hash vanished (expired, deleted) comes back as all-nil: skipped.
        """
        out = []
        for i in range(0, len(flat), _NFIELDS):
            values = flat[i:i + _NFIELDS]
            if values[0]:
                out.append(cls.from_values(values))
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready view for HTTP replies and dashboards (drops the fencing token).

        Shallow (no ``dataclasses.asdict``, whose deep copy recurses), with ``data`` and
        ``result`` clipped to the nesting limit: a record stored before the limit existed
        can still be shown.
        """
        out = {name: getattr(self, name) for name in _VIEW}
        out["data"] = nesting.clip(self.data)
        out["result"] = nesting.clip(self.result)
        return out


_VIEW = tuple(f.name for f in fields(Message) if f.name != "token")
