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

A run can be done in parts (one HTTP call each, with progress in between): ``max_steps``
(1..:data:`MAX_PART_STEPS`) ends the call after that many steps and answers a ``cursor``
(None once the walk is done); passing it back continues the same run (same run id, same
``t0``, the walk from where it stopped). The cursor is an opaque URL-safe string
(:func:`write_cursor`) holding the ``bulk.lua`` cursor, the run id, the part number and a
digest of the topic, the mode (the action, or ``count`` for a dry run) and the filter, so
a cursor is refused (ValueError) with any other topic, action, status or filter, and
when it is not one this module wrote.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import math
import secrets
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from redis.exceptions import RedisError

from . import index, scripts
from .keys import MAX_ID_LEN, TopicKeys, to_ms
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
#: Steps one part of a run takes at most (``max_steps``).
MAX_PART_STEPS = 1000
#: Longest cursor taken (an anchor id is at most MAX_ID_LEN characters).
MAX_CURSOR = 2048
_CURSOR_VERSION = 1
_CURSOR_FIELDS = {"v", "run", "scope", "part", "t0", "bound", "prio", "anchor", "score"}
#: The ``bulk.lua`` cursor of a run's first step.
_START: tuple[Any, ...] = ("", "", "", "", "")
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
    on (0 on a dry run), in ``steps`` script calls (of this call, when the run is done in
    parts). ``run`` is the run's id, ``part`` this call's number in the run (1 for the
    first), ``cursor`` where the next part starts (None: the walk is done)."""

    scanned: int = 0
    matched: int = 0
    acted: int = 0
    steps: int = 0
    run: str = ""
    part: int = 1
    cursor: str | None = None

    @property
    def done(self) -> bool:
        return self.cursor is None

    def to_dict(self) -> dict[str, int]:
        """The counts (not the run, part or cursor)."""
        return {"scanned": self.scanned, "matched": self.matched, "acted": self.acted,
                "steps": self.steps}


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


def check_max_steps(max_steps: int | None) -> None:
    """ValueError unless ``max_steps`` is None (the whole run) or 1..MAX_PART_STEPS."""
    if max_steps is not None and (isinstance(max_steps, bool) or not isinstance(max_steps, int)
                                  or not 1 <= max_steps <= MAX_PART_STEPS):
        raise ValueError(f"max_steps must be an integer 1..{MAX_PART_STEPS}: {max_steps!r}")


def scope_of(topic: str, action: str, flt: BulkFilter, dry_run: bool) -> str:
    """The digest a cursor carries of what its run acts on: the topic, the mode (the
    action, ``count`` for a dry run) and the filter (the times as the script's ms)."""
    what = [topic, "count" if dry_run else action, flt.status, flt.error or "",
            None if flt.since is None else to_ms(flt.since),
            None if flt.until is None else to_ms(flt.until), flt.stat or ""]
    text = json.dumps(what, ensure_ascii=False, separators=(",", ":"))
    return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()


def write_cursor(run: str, scope: str, part: int, at: list[Any]) -> str:
    """The opaque cursor of the part after ``part``: the run, the scope digest and the
    ``bulk.lua`` cursor ``at`` (t0, bound, priority, anchor id, anchor score)."""
    t0, bound, prio, anchor, score = at
    body = {"v": _CURSOR_VERSION, "run": run, "scope": scope, "part": part,
            "t0": int(t0), "bound": str(bound), "prio": int(prio), "anchor": str(anchor),
            "score": str(score)}
    raw = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _number_text(value: Any) -> bool:
    """``value`` is "" or a score as Redis writes one (a float's text)."""
    if not isinstance(value, str) or len(value) > 40:
        return False
    if value == "":
        return True
    try:
        return not math.isnan(float(value))
    except ValueError:
        return False


def read_cursor(cursor: str, scope: str, status: str) -> tuple[str, int, list[Any]]:
    """``(run, part, bulk.lua cursor)`` of a cursor :func:`write_cursor` made for this
    ``scope`` (a walk of ``status``), else ValueError saying what is wrong (malformed, or
    another run's)."""
    if not isinstance(cursor, str) or not cursor or len(cursor) > MAX_CURSOR:
        raise ValueError(f"cursor must be the cursor a previous call answered "
                         f"(1..{MAX_CURSOR} characters)")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        body = json.loads(raw.decode("utf-8"))
    except (binascii.Error, ValueError):
        raise ValueError("cursor is malformed: not one a previous call answered") from None
    if not (isinstance(body, dict) and set(body) == _CURSOR_FIELDS
            and _int(body["v"], _CURSOR_VERSION, _CURSOR_VERSION) and _sound(body, status)):
        raise ValueError("cursor is malformed: not one a previous call answered")
    if body.get("scope") != scope:
        raise ValueError("cursor belongs to another bulk run: its topic, action, status or "
                         "filter (or dry_run) differ from this call's")
    return body["run"], body["part"], [body["t0"], body["bound"], body["prio"],
                                       body["anchor"], body["score"]]


def _int(value: Any, lo: int, hi: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and lo <= value <= hi


def _text(value: Any, is_id: bool) -> bool:
    return (isinstance(value, str) and len(value) <= MAX_ID_LEN and value.isprintable()
            and not (is_id and any(c.isspace() for c in value)))


def _sound(body: dict[str, Any], status: str) -> bool:
    """The fields of a decoded cursor have the types and ranges :func:`write_cursor`
    writes (the anchor an id, the score a float's text, or a group's name when queued)."""
    run = body["run"]
    return (isinstance(run, str) and len(run) == 16 and all(c in "0123456789abcdef" for c in run)
            and _int(body["part"], 1, 10**9) and _int(body["t0"], 1, to_ms(MAX_TIME))
            and _int(body["prio"], -10**6, 10**6) and _number_text(body["bound"])
            and _text(body["anchor"], True) and _text(body["score"], False)
            and (status == QUEUED or _number_text(body["score"])))


def run_bulk(client: Any, k: TopicKeys, action: str, flt: BulkFilter, *, dry_run: bool,
             step: int, at_front: bool, index_slack: float,
             progress: Callable[[BulkCounts], None] | None, cursor: str | None = None,
             max_steps: int | None = None) -> BulkCounts:
    """Drive the steps of one bulk action (checked by :func:`check` first); ``progress``
    is called after every step with the counts so far. ``cursor`` (a previous part's)
    continues that run; ``max_steps`` stops after that many steps with the counts' cursor
    set when the walk is not done (ValueError for a bad or mismatched cursor, a bad
    ``max_steps``, before any step)."""
    check(action, flt, step)
    check_max_steps(max_steps)
    scope = scope_of(k.topic, action, flt, dry_run)
    if cursor is None:
        run, part, at = secrets.token_hex(8), 0, list(_START)
    else:
        run, part, at = read_cursor(cursor, scope, flt.status)
    counts = BulkCounts(run=run, part=part + 1)
    fixed = [k.msg_prefix, flt.status, "count" if dry_run else action, step,
             flt.error or "", "" if flt.since is None else to_ms(flt.since),
             "" if flt.until is None else to_ms(flt.until), flt.stat or "", int(at_front),
             CANCELED_ERROR, ErrorKind.CANCELED.value, run]
    keys = [k.queue, k.prios, k.delayed, k.started, k.finished, k.failed]
    while True:
        reply = scripts.run(client, "bulk", keys, fixed + at)
        scanned, matched, acted, done = (int(v) for v in reply[:4])
        at = list(reply[4:9])
        counts.scanned += scanned
        counts.matched += matched
        counts.acted += acted
        counts.steps += 1
        _bookkeep(client, k.topic, action, list(reply[9:]), index_slack)
        if progress is not None:
            progress(counts)
        if done:
            return counts
        if max_steps is not None and counts.steps >= max_steps:
            counts.cursor = write_cursor(run, scope, counts.part, at)
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
