"""Bulk actions by filter: requeue, delete or cancel every message of a topic that
matches a filter, counted first (``dry_run``) and then done in bounded steps.

Each step is ONE ``bulk.lua`` call over at most ``step`` ids of the status' container,
filtering on the record fields server-side and acting on the matches in the same call, so
Redis never runs one long script (it serves other clients between steps) and each step is
atomic over the topic's keys (one hash tag: plain Redis, Twemproxy, Redis Cluster). The
steps walk the container once from a cursor (the last visited id still in it), so an id is
visited once even while the steps (or consumers) change the container; messages that
arrive after the first step are left alone, and a requeue marks each record with the run's
id (its ``bulk`` field), so one that fails again before the run ends is not taken twice.

Which actions apply to which status (:data:`ACTIONS`): ``requeue`` failed or finished
messages (fresh attempts, as :meth:`Broker.requeue`); ``delete`` in any status (a running
one is fenced out, as :meth:`Broker.delete`); ``cancel`` queued or delayed ones: they
become dead letters that never ran (again), ``error_kind`` ``canceled``, kept
``failure_ttl`` (so a waiting publisher is told). No completion notice is sent.

The time range applies to the record's ``ended_at`` (failed, finished), ``started_at``
(started) or ``created_at`` (queued, delayed: when it was published).
"""

from __future__ import annotations

import logging
import math
import secrets
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from redis.exceptions import RedisError

from . import index, scripts
from .keys import TopicKeys, to_ms
from .message import DELAYED, FAILED, FINISHED, QUEUED, STARTED, ErrorKind

log = logging.getLogger(__name__)

#: The statuses each action takes.
ACTIONS: dict[str, tuple[str, ...]] = {
    "requeue": (FAILED, FINISHED),
    "delete": (QUEUED, DELAYED, STARTED, FINISHED, FAILED),
    "cancel": (QUEUED, DELAYED),
}
#: Ids one step visits by default, and at most.
STEP = 1000
MAX_STEP = 10_000
#: Latest ``since``/``until`` taken (epoch seconds, year 5138): keeps the milliseconds far
#: inside what Lua's doubles hold exactly.
MAX_TIME = 1e11
#: The ``error`` a canceled message gets.
CANCELED_ERROR = "canceled by a bulk action"


@dataclass(frozen=True, slots=True)
class BulkFilter:
    """Which messages of one status a bulk action takes: ``error`` a case-sensitive
    substring of the record's error, ``since``/``until`` epoch seconds (inclusive) on its
    time field (see the module doc), ``stat`` the handler's answered stat (the ``stat`` of
    the stored result). None (or "") leaves a condition out; no condition at all takes
    every message in ``status``."""

    status: str
    error: str | None = None
    since: float | None = None
    until: float | None = None
    stat: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v not in (None, "")}


@dataclass(slots=True)
class BulkCounts:
    """How far a bulk action got: ids ``scanned``, ``matched`` by the filter, ``acted``
    on (0 on a dry run), in ``steps`` script calls."""

    scanned: int = 0
    matched: int = 0
    acted: int = 0
    steps: int = 0

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


def check(action: str, flt: BulkFilter, step: int) -> None:
    """ValueError naming what is wrong: an unknown action, a status it does not take, a
    time that is not a finite number, ``since > until``, a step outside 1..MAX_STEP."""
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}; expected one of {', '.join(ACTIONS)}")
    if flt.status not in ACTIONS[action]:
        raise ValueError(f"{action} takes status {' or '.join(ACTIONS[action])}, "
                         f"not {flt.status!r}")
    for name in ("since", "until"):
        value = getattr(flt, name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)
                                  or not math.isfinite(value) or not 0 <= value <= MAX_TIME):
            raise ValueError(f"{name} must be epoch seconds 0..{MAX_TIME:g}: {value!r}")
    if flt.since is not None and flt.until is not None and flt.since > flt.until:
        raise ValueError(f"since ({flt.since:g}) is after until ({flt.until:g})")
    for name in ("error", "stat"):
        value = getattr(flt, name)
        if value is not None and not isinstance(value, str):
            raise ValueError(f"{name} must be a string: {value!r}")
    if isinstance(step, bool) or not isinstance(step, int) or not 1 <= step <= MAX_STEP:
        raise ValueError(f"step must be an integer 1..{MAX_STEP}: {step!r}")


def run_bulk(client: Any, k: TopicKeys, action: str, flt: BulkFilter, *, dry_run: bool,
             step: int, at_front: bool, index_slack: float,
             progress: Callable[[BulkCounts], None] | None) -> BulkCounts:
    """Drive the steps of one bulk action (checked by :func:`check` first); ``progress``
    is called after every step with the counts so far."""
    check(action, flt, step)
    counts = BulkCounts()
    fixed = [k.msg_prefix, flt.status, "count" if dry_run else action, step,
             flt.error or "", "" if flt.since is None else to_ms(flt.since),
             "" if flt.until is None else to_ms(flt.until), flt.stat or "", int(at_front),
             CANCELED_ERROR, ErrorKind.CANCELED.value, secrets.token_hex(8)]
    cursor: list[Any] = ["", "", "", "", ""]
    keys = [k.queue, k.prios, k.delayed, k.started, k.finished, k.failed]
    while True:
        reply = scripts.run(client, "bulk", keys, fixed + cursor)
        scanned, matched, acted, done = (int(v) for v in reply[:4])
        cursor = list(reply[4:9])
        counts.scanned += scanned
        counts.matched += matched
        counts.acted += acted
        counts.steps += 1
        _bookkeep(client, k.topic, action, list(reply[9:]), index_slack)
        if progress is not None:
            progress(counts)
        if done:
            return counts


def _bookkeep(client: Any, topic: str, action: str, extra: list[Any],
              index_slack: float) -> None:
    """The id index after a step, best effort (see :mod:`.index`): deleted ids are
    forgotten, canceled ones kept as long as their dead letter."""
    if not extra:
        return
    if action == "delete":
        index.forget(client, extra, topic)
        return
    try:
        pipe = client.pipeline(transaction=False)
        for i in range(0, len(extra), 2):
            ttl_ms = int(extra[i + 1] or 0)
            if ttl_ms > 0:
                index.queue_write(pipe, extra[i], topic, ttl_ms + to_ms(index_slack))
        results = pipe.execute(raise_on_error=False)
        index.ignore_errors(results, list(range(len(results))), "bulk cancel id index")
    except RedisError as exc:
        log.warning("bulk cancel id index on %s failed: %s", topic, exc)
