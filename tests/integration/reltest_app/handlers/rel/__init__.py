"""One handler that records each run of each message number."""

import time

from butterfly_common import api, retstat, runtime

RUNS = "reltest:{runs}"


@api
def work(req, n: int):
    """Count this run of message ``n`` (a hash on one key), then take a moment."""
    runtime.get_redis().hincrby(RUNS, str(n), 1)
    time.sleep(0.002)
    return retstat.OK, {"n": n}
