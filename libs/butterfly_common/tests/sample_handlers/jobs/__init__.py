"""Queue-facing handlers for the consumer tests."""

import threading
import time

from butterfly_common import Request, api, retstat, runtime

STARTED = threading.Event()


@api
def add(req: Request, a: int, b: int):
    """Add two integers; logs the publisher's reqid as its own."""
    return retstat.OK, {"sum": a + b, "reqid": req.reqid, "method": req.method}


@api
def flaky(req: Request, key: str, failures: int):
    """Raise until called ``failures`` times for ``key``, then succeed."""
    calls = runtime.get_redis().incr(f"bf:test:flaky:{key}")
    if calls <= failures:
        raise RuntimeError(f"failure {calls}")
    return retstat.OK, {"calls": calls}


@api
def slow(req: Request, seconds: float):
    """Sleep in short steps (interruptible), for timeouts and leases."""
    STARTED.set()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.01)
    return retstat.OK, {"slept": seconds}


@api(admin=True)
def admin_only(req: Request):
    return retstat.OK


@api(topic=False)
def http_only(req: Request):
    return retstat.OK


@api
def stepped(req: Request, steps: int, gate: str):
    """Report progress step by step; before each step waits (10 s at most) until the test
    raised the counter ``bf:test:gate:<gate>`` past it, so the test sees every step."""
    stored = []
    for done in range(steps):
        stored.append(req.progress(done, steps, f"step {done + 1}\nof {steps}"))
        deadline = time.monotonic() + 10
        while int(runtime.get_redis().get(f"bf:test:gate:{gate}") or 0) <= done:
            if time.monotonic() > deadline:
                raise RuntimeError(f"gate {gate} not opened past {done}")
            time.sleep(0.01)
    stored.append(req.progress(steps, steps, "done"))
    return retstat.OK, {"stored": stored, "method": req.method}


@api
def worded(req: Request, text: str):
    """Fail as a server error worded ``text``: the consumer's own timeout wording from a
    handler must still be recorded as an exception, not a timeout."""
    req.error_str = text
    return retstat.ERR_SERVER_EXCEPTION
