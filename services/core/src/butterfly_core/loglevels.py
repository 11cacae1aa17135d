"""Log levels changed at run time, for every worker of core at once.

A gunicorn worker is a process of its own: a level set in the one that took the request
would leave the others as they were. So a change is written to one Redis hash, then the
framework's :class:`~butterfly_common.coordination.Version` counter beside it is bumped
(single-key commands under one hash tag: fine through Twemproxy and on Redis Cluster);
every worker polls the counter (one GET every half second) and applies the levels when it
moves, and a read syncs first, so every worker answers the same. Levels stay in Redis
until set again, so workers started later (and after a restart) get them too.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

from butterfly_common import runtime
from butterfly_common.coordination import Version
from butterfly_common.periodic import Periodic
from butterfly_common.settings import Settings

KEY = "bf:loglevels:{core}"
VERSION_KEY = "bf:loglevels:{core}:version"
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
POLL_SECONDS = 0.5

log = logging.getLogger("butterfly.core.loglevels")
_lock = threading.Lock()
_applied = 0  # the version this process has applied


def field_of(name: str) -> str:
    """The hash field of a logger: its name, ``root`` for the root logger."""
    return name or "root"


def exists(name: str) -> bool:
    """True for the root logger and loggers the code created (or their parents); any other
    name is refused, so a caller cannot make the process create loggers without end."""
    return name in ("", "root") or name in logging.root.manager.loggerDict


def level_of(name: str) -> str:
    """The level set on ``name`` itself (NOTSET when it inherits its parent's)."""
    return logging.getLevelName(logging.getLogger(name or None).level)


def version() -> Version:
    """The change counter of the shared levels."""
    return Version(runtime.get_redis(), VERSION_KEY)


def _apply(levels: Mapping[Any, Any]) -> None:
    for name, level in levels.items():
        if isinstance(name, str) and level in LEVELS and exists(name):
            logging.getLogger(None if name == "root" else name).setLevel(level)


def sync() -> int:
    """Apply the shared levels when their version moved since this process last did."""
    global _applied
    current = version().get()
    with _lock:
        if current == _applied:
            return current
        _apply(runtime.get_redis().hgetall(KEY))
        _applied = current
        return current


def publish(name: str, level: str) -> int:
    """Set ``name`` to ``level`` for every worker; applied here at once. The new version."""
    global _applied
    runtime.get_redis().hset(KEY, field_of(name), level)
    new = version().bump()
    with _lock:
        logging.getLogger(name or None).setLevel(level)
        if new == _applied + 1:
            _applied = new  # nothing else changed in between
    return new


def start_sync(settings: Settings) -> Callable[[], None]:
    """Starter: poll the version in this worker until stopped (levels of idle workers
    change too, not only of those that serve a read); at once, then every
    ``POLL_SECONDS``. Redis away: the levels stay as they are, the outage is logged once."""
    loop = Periodic("loglevel-sync", POLL_SECONDS, sync, first_delay=0, logger=log).start()
    return lambda: loop.stop(POLL_SECONDS + 5)
