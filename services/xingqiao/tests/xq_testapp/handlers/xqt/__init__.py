"""``/xqt/*``: task handlers for the xingqiao tests. Runs are counted in Redis
(``xqt:runs:<key>``) so a test can prove a task ran exactly as often as it should."""

from __future__ import annotations

import time
from typing import Any

from butterfly_common import api, retstat, runtime
from xq_testapp import STOPPING


def _pause(seconds: float) -> None:
    """Sleep ``seconds`` in short steps (a message's timeout interrupts between them);
    raise when the process is stopping (xq_testapp.STOPPING), so a teardown never waits
    out a long sleep."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if STOPPING.is_set():
            raise RuntimeError("the test app is stopping")
        time.sleep(0.01)


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
    _pause(seconds)
    return retstat.OK, {"slept": seconds}


@api
def mimic(req, text: str):
    """Fail as a server error whose wording is ``text`` (e.g. the consumer's own timeout
    wording): only the record's ``error_kind`` may tell a real timeout apart."""
    req.error_str = text
    return retstat.ERR_SERVER_EXCEPTION


@api
def numbers(req, n: int):
    """A list for a map: ``numbers`` = 0..n-1."""
    return retstat.OK, {"numbers": list(range(n))}


_MAX = ("local m = tonumber(redis.call('get', KEYS[1]) or '0') "
        "if tonumber(ARGV[1]) > m then redis.call('set', KEYS[1], ARGV[1]) end")


@api
def item(req, item: Any = None, key: str = "", seconds: float = 0.0,
         flaky_items: list | None = None):
    """One map item: counts its runs (``xqt:runs:<key>:<item>``) and the most items of
    ``key`` running at once (``xqt:maxconc:<key>``); fails while ``xqt:block:<key>:<item>``
    exists, and on the first run of an item in ``flaky_items``."""
    r = runtime.get_redis()
    runs = _count(f"{key}:{item}")
    r.eval(_MAX, 1, f"xqt:maxconc:{key}", r.incr(f"xqt:conc:{key}"))
    try:
        _pause(seconds)
    finally:
        r.decr(f"xqt:conc:{key}")
    if r.exists(f"xqt:block:{key}:{item}"):
        return "ERR_TEST_BLOCKED", {"item": item}
    if item in (flaky_items or []) and runs == 1:
        return "ERR_TEST_FLAKY", {"item": item}
    return retstat.OK, {"item": item, "double": item * 2 if isinstance(item, int) else item}


@api
def gather(req, results: list, failed: list | None = None):
    """A map's collect step: the items in the order received (None for a failed one)."""
    order = [r["item"] if isinstance(r, dict) else None for r in results]
    return retstat.OK, {"data": {"order": order, "failed": failed or []}}


@api
def record(req, key: str, name: str = "", saga: dict | None = None, fail: bool = False,
           seconds: float = 0.0):
    """A compensation step: appends ``{name, saga}`` (JSON) to ``xqt:calls:<key>`` (the
    order of the calls is the list's), sleeps ``seconds``, then fails when ``fail``."""
    import json

    runtime.get_redis().rpush(f"xqt:calls:{key}", json.dumps({"name": name, "saga": saga}))
    _pause(seconds)
    return ("ERR_TEST_UNDO_FAILED", {"name": name}) if fail else (retstat.OK, {"name": name})
