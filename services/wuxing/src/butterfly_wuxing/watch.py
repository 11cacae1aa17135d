"""The change feed: ``watch(namespace, since)`` answers every change after ``since``.

Changes come from the history table, in revision order, whole revisions at a time. When
there is none yet, the call long-polls the namespace's Redis version key (one GET per poll,
so it works through Twemproxy: no pub/sub, no blocking commands) with an interval that
starts at 1 ms and doubles up to ``WUXING_WATCH_POLL_MAX``. With Redis down it polls the
database revision instead. A ``since`` older than the retention is ERR_REVISION_COMPACTED.
"""

from __future__ import annotations

import time
from typing import Any

from butterfly_common import db

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
    current, compacted = namespace_revision(namespace)
    if since is None:
        return _answer(current, [], compacted)
    values.in_range(since, E.ERR_REVISION_IS_INVALID, "since")
    if since < compacted:
        raise WuxingError(E.ERR_REVISION_COMPACTED,
                          f"history up to revision {compacted} was pruned; read the current "
                          "state and watch from its revision", {"compact_revision": compacted})
    changes = changes_after(namespace, since, config.watch_max_changes)
    if changes or timeout <= 0:
        return _answer(since, changes, compacted)
    # Do not hold a pooled DB connection while waiting.
    if db.database.obj is not None and not db.database.is_closed():
        db.database.close()
    deadline = time.monotonic() + min(timeout, config.watch_max_timeout)
    store = cache.get_cache()
    seen = since
    interval = 0.001
    next_db_poll = 0.0
    while time.monotonic() < deadline:
        version = store.version(namespace)
        if version is None and time.monotonic() >= next_db_poll:
            # Redis down or the key missing: ask the database, and reseed the key.
            next_db_poll = time.monotonic() + DB_POLL
            with db.database.connection_context():
                version = namespace_revision(namespace)[0]
            store.advance(namespace, version)
        if version is not None and version > seen:
            seen = version
            with db.database.connection_context():
                changes = changes_after(namespace, since, config.watch_max_changes)
            if changes:
                return _answer(since, changes, compacted)
        time.sleep(min(interval, max(0.0, deadline - time.monotonic())))
        interval = min(interval * 2, config.watch_poll_max)
    return _answer(since, [], compacted)
