"""The change feed: ``watch(namespace, since)`` answers every change after ``since``.

Changes come from the history table, in revision order, whole revisions at a time. When
there is none yet, the call long-polls the namespace's Redis version key (one GET per poll,
so it works through Twemproxy: no pub/sub, no blocking commands) with an interval that
starts at 1 ms and doubles up to ``WUXING_WATCH_POLL_MAX``. With Redis down it polls the
database revision instead. A ``since`` older than the retention is ERR_REVISION_COMPACTED.

Many watches of one namespace in one process share the work (:class:`_Waiters`): one of
them polls the version key while the others sleep until it sees a new revision, and the
changes after a revision are read from the database once for all of them (``_shared``).
Two hundred clients watching cost a process one GET per poll and one query per change,
not two hundred of each. A write made by this process wakes its watches at once
(``cache.COMMITTED``); the other processes see it at their next poll.

A client that is up to date (its ``since`` is the revision this process last saw, and the
version key agrees) waits without touching the database: the re-poll that follows every
answer costs one GET, which matters when 200 of them arrive together.

:func:`stream` is the same feed kept open (``/wuxing/watch?stream=1``): one
``application/x-ndjson`` answer whose lines are the changes as they come, so a change costs
a watcher one line on a connection it already holds instead of a whole request. It waits
in the same :class:`_Waiters` and reads through the same ``_shared`` as the long poll (the
streams of a namespace woken by a revision read its changes once, and encode them once);
it ends after ``timeout`` seconds like a long poll, and the client opens the next one from
the last revision it holds. Lines (each one JSON object and ``\n``):

- a change, exactly as in the long poll's ``changes`` (``revision``, ``item_name``...);
- ``{"stream": "revision", "revision": R}`` after the changes of each read: everything up
  to revision R was sent (a read never ends inside a revision). A client hands changes
  out on this line, so a cut connection never leaves it half a revision;
- ``{"stream": "keepalive", "revision": R}`` first when there is nothing to send at once
  (so the client knows the stream is open, and from which revision) and after
  ``WUXING_WATCH_KEEPALIVE`` seconds without a change;
- ``{"stream": "end", "revision": R}`` last, ``timeout`` seconds after the start: resume
  from R.

Everything a long poll refuses is refused the same way before the stream starts (the
same stat and HTTP status: an unknown namespace, a bad ``since``, and a ``since`` older
than the retention, ERR_REVISION_COMPACTED with ``compact_revision``).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from butterfly_common import db
from butterfly_common.protocol import json_default

from . import cache, values
from . import errors as E
from .config import WuxingConfig
from .errors import WuxingError
from .history import change_of
from .models import History
from .revisions import namespace_revision

DB_POLL = 0.25


def changes_after(namespace: str, since: int, limit: int) -> list[dict[str, Any]]:
    """Up to ``limit`` rows after ``since``, never ending in the middle of a revision."""
    base = History.select().where((History.namespace == namespace)
                                  & (History.revision > since))
    rows = list(base.order_by(History.revision, History.id).limit(limit + 1))
    if len(rows) > limit:
        cut = rows[limit - 1].revision
        if rows[limit].revision == cut:
            if rows[0].revision == cut:  # one revision bigger than the limit: all of it
                rows = list(base.where(History.revision == cut).order_by(History.id))
            else:
                rows = [r for r in rows if r.revision < cut]
        else:
            rows = rows[:limit]
    return [change_of(r) for r in rows]


def _answer(since: int, changes: list[dict[str, Any]], compacted: int) -> dict[str, Any]:
    revision = changes[-1]["revision"] if changes else since
    return {"revision": revision, "compact_revision": compacted, "changes": changes}


def watch(namespace: str, since: int | None, timeout: float,
          config: WuxingConfig) -> dict[str, Any]:
    values.check_namespace(namespace)
    if since is not None and timeout > 0:
        values.in_range(since, E.ERR_REVISION_IS_INVALID, "since")
        compacted = _current(namespace, since)
        if compacted is not None:
            return _wait(namespace, since, compacted, timeout, config)
    current, compacted = _db_revision(namespace)
    _waiters(namespace).compacted = compacted
    if since is None:
        return _answer(current, [], compacted)
    values.in_range(since, E.ERR_REVISION_IS_INVALID, "since")
    _forget_newer(namespace, current)
    if since < compacted:
        raise _compacted(compacted)
    # history rows are written with the revision bump: none after the current revision
    changes = _shared(namespace, since, current, config).changes if since < current else []
    if changes or timeout <= 0:
        return _answer(since, changes, compacted)
    return _wait(namespace, since, compacted, timeout, config)


def stream(namespace: str, since: int | None, timeout: float,
           config: WuxingConfig) -> Iterator[bytes]:
    """The streamed watch: checks everything now (raising what the long poll raises), then
    answers the generator of its lines (module doc). ``since`` None: from the current
    revision."""
    values.check_namespace(namespace)
    if since is not None:
        values.in_range(since, E.ERR_REVISION_IS_INVALID, "since")
        compacted = _current(namespace, since)
        if compacted is not None:  # up to date: a reconnect costs no query
            return _lines(namespace, since, since, timeout, config)
    current, compacted = _db_revision(namespace)
    _waiters(namespace).compacted = compacted
    _forget_newer(namespace, current)
    if since is None:
        since = current
    elif since < compacted:
        raise _compacted(compacted)
    return _lines(namespace, since, current, timeout, config)


def _compacted(compacted: int) -> WuxingError:
    return WuxingError(E.ERR_REVISION_COMPACTED,
                       f"history up to revision {compacted} was pruned; read the current "
                       "state and watch from its revision", {"compact_revision": compacted})


def _marker(kind: str, revision: int) -> bytes:
    return b'{"stream": "%s", "revision": %d}\n' % (kind.encode(), revision)


def _lines(namespace: str, since: int, current: int, timeout: float,
           config: WuxingConfig) -> Iterator[bytes]:
    """The stream's lines after ``since`` (``current``: the namespace's revision as just
    read) for ``timeout`` seconds at most (``WUXING_WATCH_MAX_TIMEOUT``)."""
    # Do not hold a pooled DB connection for the stream's life (_shared opens its own).
    if db.database.obj is not None and not db.database.is_closed():
        db.database.close()
    now = time.monotonic()
    deadline = now + max(0.0, min(timeout, config.watch_max_timeout))
    last = seen = since
    waiters = _waiters(namespace)
    read = lambda: _read_version(namespace)  # noqa: E731
    version: int | None = current
    idle = True  # nothing sent yet: the first line is a keep-alive
    while True:
        if version is not None:  # a revision above ``last`` was seen: send its changes
            seen = max(seen, version)
            while last < seen:
                batch = _shared(namespace, last, seen, config)
                if not batch.changes:
                    break
                yield batch.lines()
                last = batch.changes[-1]["revision"]
                idle = False
            seen = max(seen, last)
        if time.monotonic() >= deadline:
            yield _marker("end", last)
            return
        if idle:
            yield _marker("keepalive", last)
        idle = True
        wake = min(deadline, time.monotonic() + config.watch_keepalive)
        version = waiters.newer_than(seen, wake, config.watch_poll_max, read)


def _db_revision(namespace: str) -> tuple[int, int]:
    """The namespace's revision, on a pooled connection held for this read only: a burst
    of watches queueing for the memo must not hold the pool's connections meanwhile
    (with more threads than connections they ran out)."""
    with db.database.connection_context():
        return namespace_revision(namespace)


def _current(namespace: str, since: int) -> int | None:
    """The compacted revision when ``since`` is the latest revision of ``namespace`` as
    this process and the version key both know it (None: ask the database)."""
    waiters = _waiters(namespace)
    if waiters.version != since or waiters.compacted is None or since <= 0:
        return None
    return waiters.compacted if _read_version(namespace) == since else None


def _wait(namespace: str, since: int, compacted: int, timeout: float,
          config: WuxingConfig) -> dict[str, Any]:
    """Long-poll for a revision above ``since``; its changes, or none at the timeout."""
    # Do not hold a pooled DB connection while waiting.
    if db.database.obj is not None and not db.database.is_closed():
        db.database.close()
    deadline = time.monotonic() + min(timeout, config.watch_max_timeout)
    seen = since
    while True:
        version = _waiters(namespace).newer_than(seen, deadline, config.watch_poll_max,
                                                 lambda: _read_version(namespace))
        if version is None:
            return _answer(since, [], compacted)
        seen = version
        changes = _shared(namespace, since, version, config).changes
        if changes:
            return _answer(since, changes, compacted)


def _forget_newer(namespace: str, revision: int) -> None:
    """The database is behind what this process saw of ``namespace`` (restored from a
    backup; another database, in tests): what the watches shared about it is void."""
    waiters = _waiters(namespace)
    with waiters.cond:
        if waiters.version <= revision:
            return
        waiters.version = revision
    with _memo_lock:
        for key in [k for k in _memo if k[1] == namespace]:
            del _memo[key]


def _read_version(namespace: str) -> int | None:
    """The namespace's version key; with Redis down (or the key missing) the database's
    revision at most every ``DB_POLL`` (which then reseeds the key), else None."""
    store = cache.get_cache()
    version = store.version(namespace)
    if version is not None:
        return version
    now = time.monotonic()
    if now < _next_db_poll.get(namespace, 0.0):
        return None
    _next_db_poll[namespace] = now + DB_POLL
    with db.database.connection_context():
        version = namespace_revision(namespace)[0]
    store.advance(namespace, version)
    return version


#: namespace -> when its poller may ask the database again (Redis down)
_next_db_poll: dict[str, float] = {}


class _Waiters:
    """This process's watches of one namespace: whichever holds ``poller`` reads the
    version, the others sleep on ``cond``; every revision it sees wakes them all."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.version = 0
        self.poller = False
        #: the namespace's compacted revision when this process last read it
        self.compacted: int | None = None

    def newer_than(self, seen: int, deadline: float, poll_max: float,
                   read: Callable[[], int | None]) -> int | None:
        """A version above ``seen`` (None at ``deadline``): seen by the poller, or polled
        here when no other watch polls (interval from 1 ms doubling to ``poll_max``)."""
        with self.cond:
            while True:
                if self.version > seen:
                    return self.version
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                if not self.poller:
                    self.poller = True
                    break
                self.cond.wait(remaining)
        interval = 0.001
        try:
            while True:
                version = read()
                with self.cond:
                    if version is not None and version > self.version:
                        self.version = version
                        self.cond.notify_all()
                    if self.version > seen:
                        return self.version
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                time.sleep(min(interval, remaining))
                interval = min(interval * 2, poll_max)
        finally:
            with self.cond:
                self.poller = False
                self.cond.notify_all()  # one of the sleepers takes the polling over


_registry: dict[str, _Waiters] = {}
_registry_lock = threading.Lock()


def _committed(namespace: str, revision: int) -> None:
    """This process wrote ``revision``: wake its watches of ``namespace`` now."""
    waiters = _registry.get(namespace)
    if waiters is None:
        return
    with waiters.cond:
        if revision > waiters.version:
            waiters.version = revision
            waiters.cond.notify_all()


cache.COMMITTED.append(_committed)


def _waiters(namespace: str) -> _Waiters:
    with _registry_lock:
        found = _registry.get(namespace)
        if found is None:
            found = _registry[namespace] = _Waiters()
        return found


#: (database, namespace, since) -> (revision, when, changes): what the watches woken by
#: one revision read once. Only the same revision of the same database, for MEMO_TTL.
_memo: dict[tuple[int, str, int], tuple[int, float, _Read]] = {}
_memo_lock = threading.Lock()
#: the most answers kept (more are dropped all at once), and for how long
MEMO_SIZE = 256
MEMO_TTL = 2.0


class _Read:
    """One read of the changes after a revision, shared by the watches it serves; the
    streams' lines of it are encoded once, by the first stream that sends them."""

    __slots__ = ("_lines", "changes")

    def __init__(self, changes: list[dict[str, Any]]) -> None:
        self.changes = changes
        self._lines: bytes | None = None

    def lines(self) -> bytes:
        """The changes as stream lines, then the revision line (two threads racing here
        both encode the same bytes: harmless)."""
        if self._lines is None:
            out = [json.dumps(c, default=json_default).encode() + b"\n"
                   for c in self.changes]
            out.append(_marker("revision", self.changes[-1]["revision"]))
            self._lines = b"".join(out)
        return self._lines


#: how many times this process read changes for its watches (tests count the reads)
READS = [0]


def _shared(namespace: str, since: int, version: int, config: WuxingConfig) -> _Read:
    """The changes after ``since`` up to at least ``version``: read once from the database
    for every watch of this process that ``version`` woke (the lock makes the ones woken
    together wait for the first one's read, then take it; only that one opens a
    connection)."""
    key = (id(db.database.obj), namespace, since)
    now = time.monotonic()
    hit = _memo.get(key)  # a dict read is atomic: the hundred woken together do not queue
    if hit is not None and hit[0] == version and now - hit[1] < MEMO_TTL:
        return hit[2]
    with _memo_lock:
        hit = _memo.get(key)
        if hit is not None and hit[0] == version and now - hit[1] < MEMO_TTL:
            return hit[2]
        with db.database.connection_context():
            read = _Read(changes_after(namespace, since, config.watch_max_changes))
        READS[0] += 1
        if len(_memo) >= MEMO_SIZE:
            _memo.clear()
        _memo[key] = (version, now, read)
        return read
