"""``/xqt/*``: task handlers for the xingqiao tests. Runs are counted in Redis
(``xqt:runs:<key>``) so a test can prove a task ran exactly as often as it should."""

from __future__ import annotations

import time

from butterfly_common import api, retstat, runtime


def _count(key: str) -> int:
    return int(runtime.get_redis().incr(f"xqt:runs:{key}"))


@api
def ok(req, key: str = "", value: str = "", all_taskdata: list | None = None):
    """Succeed, echoing ``value``; counts a run of ``key``."""
    n = _count(key) if key else 0
    return retstat.OK, {"value": value, "n": n, "got": len(all_taskdata or [])}


@api
def fail(req, key: str = ""):
    """Answer a handler error (not an exception)."""
    if key:
        _count(key)
    return "ERR_TEST_FAILED", {"why": "asked to"}


@api
def flaky(req, key: str, failures: int):
    """Fail the first ``failures`` runs of ``key``, then succeed; records each run's time."""
    n = _count(key)
    runtime.get_redis().rpush(f"xqt:times:{key}", f"{time.time():.3f}")
    if n <= failures:
        return "ERR_TEST_FLAKY", {"n": n}
    return retstat.OK, {"n": n}


@api
def sleep(req, seconds: float, key: str = ""):
    """Sleep (interruptibly) then succeed; counts a run of ``key`` when it starts."""
    if key:
        _count(key)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.01)
    return retstat.OK, {"slept": seconds}


@api
def mimic(req, text: str):
    """Fail as a server error whose wording is ``text`` (e.g. the consumer's own timeout
    wording): only the record's ``error_kind`` may tell a real timeout apart."""
    req.error_str = text
    return retstat.ERR_SERVER_EXCEPTION
