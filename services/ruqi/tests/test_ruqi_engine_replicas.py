"""Three engine replicas as separate processes (``python -m butterfly_ruqi``), one SIGKILLed.

A short version of the issue's 3-replica test (the full 200 jobs x 30 s one, with the HTTP
servers, lives in tests/integration): every (job, scheduled time) is run at most once, and
none is missing except fires the killed replica had already started - those are recorded
``lost`` by a survivor, never run twice.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from butterfly_common import db, runtime
from butterfly_common.testing import wait_until
from butterfly_ruqi.claims import NODES_KEY
from butterfly_ruqi.models import History

JOBS = 40
RUN_BEFORE_KILL = 2.0
RUN_AFTER_KILL = 3.0


def spawn(settings, tmp_path: Path, n: int) -> list[subprocess.Popen]:
    env = {**os.environ, "BUTTERFLY_REDIS_URL": settings.redis_url,
           "BUTTERFLY_DB_URL": settings.db_url, "BUTTERFLY_LOG_LEVEL": "WARNING",
           "RUQI_TIMEZONE": "UTC", "RUQI_NODE_TTL": "1", "RUQI_WORKERS": "16",
           "RUQI_POLL_INTERVAL": "0.1", "RUQI_HTTP_ALLOW": "127.0.0.1"}
    procs = []
    for i in range(n):
        log = (tmp_path / f"replica{i}.log").open("wb")
        procs.append(subprocess.Popen([sys.executable, "-m", "butterfly_ruqi"], env=env,
                                      stdout=log, stderr=subprocess.STDOUT))
    return procs


def test_three_processes_one_killed(env, callee, add, tmp_path):
    redis = runtime.get_redis()
    procs = spawn(env, tmp_path, 3)
    try:
        # generous deadlines: under load (other work on the machine) start-up is slow, and a
        # deadline only costs time when the test is failing anyway
        wait_until(lambda: redis.zcard(NODES_KEY) == 3, timeout=60, what="3 replicas up")
        names = [f"x{i}" for i in range(JOBS)]
        for name in names:
            add(name, f"{callee.url}/tick?sleep=0.2")
        wait_until(lambda: all(len(callee.of(n)) >= RUN_BEFORE_KILL for n in names),
                   timeout=60, what="fires before the kill")
        procs[0].send_signal(signal.SIGKILL)
        procs[0].wait(5)
        killed_at = time.time()
        wait_until(lambda: all(any(c["ms"] / 1000 > killed_at + RUN_AFTER_KILL
                                   for c in callee.of(n)) for n in names), timeout=60,
                   what="fires after the kill")
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(15)
    assert [p.returncode for p in procs[1:]] == [0, 0], (tmp_path / "replica1.log").read_text()

    with db.database.connection_context():
        rows = list(History.select())
    recorded = Counter((r.job_id, round(r.scheduled_time * 1000)) for r in rows)
    called = Counter((c["job"], c["ms"]) for c in callee.calls)
    lost = {k for k in recorded if any(r.status == "lost" and
                                       (r.job_id, round(r.scheduled_time * 1000)) == k
                                       for r in rows)}
    assert max(called.values()) == 1, "a fire ran twice"
    assert max(recorded.values()) == 1, "a fire recorded twice"
    assert set(called) - set(recorded) == set(), "a fire ran without a history row"
    odd = [(r.job_id, r.status, r.cmd_output[:200]) for r in rows if r.status not in ("ok", "lost")]
    assert not odd, odd
    assert set(recorded) - set(called) <= lost, "a fire recorded ok that never arrived"
    for name in names:
        seen = sorted(ms for job, ms in recorded if job == name)
        gaps = [(a, b) for a, b in itertools.pairwise(seen) if b - a != 1000]
        assert not gaps, f"{name}: missing fires {gaps}"
    statuses = Counter(r.status for r in rows)
    assert set(statuses) <= {"ok", "lost"}, statuses
    print(f"\nreplica kill: {len(rows)} fires, {statuses}, duplicates 0, gaps 0")
