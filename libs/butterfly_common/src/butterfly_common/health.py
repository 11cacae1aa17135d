"""Readiness problems that parts of a process report about themselves.

``/readyz`` asks Redis and the database directly; background parts (a queue consumer
whose threads died, ...) cannot be probed from outside, so they register a check here
and ``/readyz`` answers 503 with its message while it reports one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

#: A check returns None when all is well, else a short sentence for ``/readyz``.
Check = Callable[[], "str | None"]

_lock = threading.Lock()
_checks: dict[str, Check] = {}


def register(name: str, check: Check) -> None:
    """Add (or replace) the check ``name``."""
    with _lock:
        _checks[name] = check


def unregister(name: str) -> None:
    """Drop the check ``name`` (a part that stopped on purpose)."""
    with _lock:
        _checks.pop(name, None)


def problems() -> dict[str, str]:
    """``{name: problem}`` of every check that reports one (a failing check is one)."""
    with _lock:
        checks = list(_checks.items())
    out = {}
    for name, check in checks:
        try:
            problem = check()
        except Exception as exc:
            problem = f"check failed: {type(exc).__name__}: {exc}"
        if problem:
            out[name] = problem[:300]
    return out
