"""One handler that records each run of each message number."""

import os
import time

from butterfly_common import api, retstat, runtime

RUNS = "reltest:{runs}"


@api
def work(req, n: int):
    """Count this run of message ``n`` (a hash on one key), then take a moment."""
    runtime.get_redis().hincrby(RUNS, str(n), 1)
    time.sleep(0.002)
    return retstat.OK, {"n": n}


@api
def slow(req, seconds: float):
    """Hold the message for ``seconds`` (in short sleeps)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.05)
    return retstat.OK, {"slept": seconds, "pid": os.getpid()}
