"""ruqi beside APScheduler 3: the same ``--jobs`` interval jobs at 1 s, each POSTing to the
same HTTP callee, measured over the same ``--seconds`` window.

- ruqi: ``bench/scheduler_accuracy.py``'s cluster (its own redis-server, a private MariaDB
  database or a SQLite file, ``--replicas`` real ``butterfly serve ruqi`` replicas with their
  production settings); the jobs added through the API. HA: any replica may die.
- APScheduler 3: one process (a child of this one) with a ``BackgroundScheduler``, its
  in-memory job store and a pool of ``--ap-threads`` threads, each job a ``requests`` POST
  on a per-thread session. One process, no HA, nothing stored. Its jobs start spread over
  the first second as ruqi's are (spread over the time it took to add them), so neither
  fires all its jobs at one instant.

Per system: fires expected (run times in the window) / arrived at the callee / missing,
duplicates, lateness p50 / p99 (the callee's arrival minus the scheduled time the caller
sent), CPU % of one core of each scheduler process and CPU ms per fire (the processes' user
+ kernel CPU over the window / fires that arrived in it).

Targets (issue 25 item 5): 3 replicas carry 3 000 jobs at 1 s within 30 % of a core each,
p99 lateness <= 100 ms, 0 missed, 0 duplicates; CPU per fire <= 0.22 ms.

    .venv/bin/python bench/ruqi_vs_apscheduler.py                 # 3000 jobs, 30 s, mysql
    .venv/bin/python bench/ruqi_vs_apscheduler.py --jobs 500 --seconds 10 --db sqlite
"""

from __future__ import annotations

import argparse
import contextlib
import math
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from harness import Report
from scheduler_accuracy import Callee, Cluster, cpu_seconds, percentile, query, until

from butterfly_common.testing import wait_until

TARGET_P99_MS = 100.0
TARGET_CPU = 30.0
TARGET_MS_PER_FIRE = 0.22


def measure(expected: set[tuple[str, int]], calls: list[tuple[str, int, str, float]],
            cpu: float, seconds: float, processes: int) -> dict[str, float]:
    """The figures of one system over its window: ``cpu`` is the CPU seconds all its
    scheduler processes used in the window."""
    arrived: dict[tuple[str, int], list[float]] = {}
    for job, ms, _, at in calls:
        arrived.setdefault((job, ms), []).append(at)
    got = [k for k in expected if k in arrived]
    late = sorted((arrived[k][0] - k[1] / 1000) * 1000 for k in got)
    return {"expected": len(expected), "arrived": len(got),
            "missing": len(expected) - len(got),
            "duplicates": sum(len(arrived[k]) - 1 for k in got),
            "p50": percentile(late, 50), "p99": percentile(late, 99),
            "cpu %/process": cpu / seconds / processes * 100,
            "ms/fire": cpu * 1000 / max(1, len(got))}


def window(ms: int, t0: float, t1: float) -> bool:
    """A scheduled time (ms) in [t0, t1), rounded as the expected sets round them."""
    return round(t0 * 1000) <= ms < round(t1 * 1000)


def grid(starts: dict[str, int], t0: float, t1: float) -> set[tuple[str, int]]:
    """(job, scheduled ms) of every 1 s run time in [t0, t1) of jobs first due at
    ``starts`` (ms)."""
    lo, hi = round(t0 * 1000), round(t1 * 1000)
    out = set()
    for job, first in starts.items():
        k = max(0, math.ceil((lo - first) / 1000))
        while first + 1000 * k < hi:
            out.add((job, first + 1000 * k))
            k += 1
    return out


def run_ruqi(args: argparse.Namespace, tmp: Path) -> dict[str, float]:
    with contextlib.ExitStack() as stack:
        cluster = Cluster(args, tmp, stack)
        t0 = time.time() + args.warmup
        t1 = t0 + args.seconds
        until(t0)
        before = sum(sum(cpu_seconds(p)) for p in cluster.pids)
        until(t1)
        used = sum(sum(cpu_seconds(p)) for p in cluster.pids) - before
        expected = cluster.expected(t0, t1)

        def history() -> dict[tuple[str, int], str]:
            rows = query(cluster.db_url, "SELECT job_id, scheduled_time, status FROM "
                         "ruqi_job_history WHERE scheduled_time >= ? AND scheduled_time < ?",
                         (t0, t1))
            return {(job, round(ts * 1000)): status for job, ts, status in rows}

        def accounted() -> bool:  # every fire arrived, or has its history row
            return expected <= set(cluster.arrivals()) | set(history())

        with contextlib.suppress(TimeoutError):
            wait_until(accounted, 30, interval=0.5, what="every fire arrived or recorded")
        calls = [c for c in cluster.callee.calls if window(c[1], t0, t1)]
        figures = measure(expected, calls, used, args.seconds, len(cluster.pids))
        recorded, arrived = history(), set(cluster.arrivals())
        absent = Counter(recorded.get(k, "none") for k in expected - arrived)
        figures["recorded missed"] = absent.get("missed", 0)
        figures["unaccounted"] = sum(n for st, n in absent.items() if st != "missed")
        return figures


def run_apscheduler(args: argparse.Namespace) -> dict[str, float]:
    callee = Callee()
    try:
        first = math.ceil(time.time()) + 3.0  # the child is up and has every job by then
        starts = {f"a{i:05d}": round((first + i / args.jobs) * 1000) for i in range(args.jobs)}
        child = subprocess.Popen([sys.executable, __file__, "--apscheduler-child",
                                  "--jobs", str(args.jobs), "--callee", callee.url,
                                  "--first", repr(first), "--ap-threads",
                                  str(args.ap_threads)])
        try:
            t0 = first + args.warmup
            t1 = t0 + args.seconds
            until(t0)
            before = sum(cpu_seconds(child.pid))
            until(t1)
            used = sum(cpu_seconds(child.pid)) - before
            until(t1 + 2)
        finally:
            child.terminate()
            child.wait(30)
        calls = [c for c in callee.calls if window(c[1], t0, t1)]
        return measure(grid(starts, t0, t1), calls, used, args.seconds, 1)
    finally:
        callee.close()


def apscheduler_child(args: argparse.Namespace) -> int:
    """The APScheduler process: ``--jobs`` interval jobs, job ``i`` first due at
    ``first + i / jobs``; each fire POSTs the callee with its job id and scheduled time.

    APScheduler calls a job's function without its scheduled time, so the pool notes the
    run times it is handed per job (a job runs one instance at a time, its run times in
    order) and each call takes the next; ``misfire_grace_time=None``, so every run time
    handed over is called (a late one shows as lateness, not as a skipped call)."""
    from collections import deque
    from datetime import UTC, datetime

    import requests
    from apscheduler.executors.pool import ThreadPoolExecutor
    from apscheduler.schedulers.background import BackgroundScheduler

    local = threading.local()
    ids = [f"a{i:05d}" for i in range(args.jobs)]
    stamps: dict[str, deque[float]] = {job: deque() for job in ids}

    class StampedPool(ThreadPoolExecutor):
        def _do_submit_job(self, job: Any, run_times: list[Any]) -> None:
            stamps[job.id].extend(rt.timestamp() for rt in run_times)
            super()._do_submit_job(job, run_times)

    def fire(job: str) -> None:
        scheduled = round(stamps[job].popleft() * 1000)
        session = getattr(local, "session", None) or requests.Session()
        local.session = session
        session.post(f"{args.callee}/tick", data=b"{}", timeout=10,
                     headers={"x-ruqi-job": job, "x-ruqi-scheduled": str(scheduled)})

    scheduler = BackgroundScheduler(
        executors={"default": StampedPool(args.ap_threads)},
        job_defaults={"coalesce": False, "misfire_grace_time": None, "max_instances": 1},
        timezone=UTC)
    for i, job in enumerate(ids):
        first_ms = round((args.first + i / args.jobs) * 1000)
        scheduler.add_job(fire, "interval", seconds=1, id=job, args=(job,),
                          start_date=datetime.fromtimestamp(first_ms / 1000, UTC))
    scheduler.start()
    threading.Event().wait()  # until terminated
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=3000, help="interval jobs at 1 s (3000)")
    parser.add_argument("--seconds", type=float, default=30.0, help="measured window (30)")
    parser.add_argument("--replicas", type=int, default=3, help="ruqi processes (3)")
    parser.add_argument("--db", choices=("sqlite", "mysql"), default="mysql",
                        help="ruqi's shared database")
    parser.add_argument("--warmup", type=float, default=3.0,
                        help="seconds after set-up, before measuring (3)")
    parser.add_argument("--ap-threads", type=int, default=20,
                        help="APScheduler's thread pool (20)")
    parser.add_argument("--only", nargs="+", choices=("ruqi", "apscheduler"),
                        default=["ruqi", "apscheduler"])
    parser.add_argument("--apscheduler-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--callee", help=argparse.SUPPRESS)
    parser.add_argument("--first", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.apscheduler_child:
        return apscheduler_child(args)
    report = Report("ruqi_vs_apscheduler",
                    f"{args.jobs} interval jobs at 1 s for {args.seconds:g} s: ruqi "
                    f"({args.replicas} replicas, {args.db}) beside APScheduler 3 (one "
                    f"process, {args.ap_threads} threads, memory job store)")
    labels = {"ruqi": f"ruqi x{args.replicas}", "apscheduler": "APScheduler 3"}
    for system in args.only:
        print(f"{system} ...", file=sys.stderr, flush=True)
        if system == "ruqi":
            with tempfile.TemporaryDirectory(prefix="bf-ruqi-vs-ap-") as tmp:
                figures = run_ruqi(args, Path(tmp))
        else:
            figures = run_apscheduler(args)
        for metric, value in figures.items():
            report.add(labels[system], metric, value)
    if "ruqi" in args.only:
        ruqi = labels["ruqi"]
        report.target(f"{ruqi} missing", report.median(ruqi, "missing"), "<=", 0)
        report.target(f"{ruqi} neither ran nor recorded missed",
                      report.median(ruqi, "unaccounted"), "<=", 0)
        report.target(f"{ruqi} duplicates", report.median(ruqi, "duplicates"), "<=", 0)
        report.target(f"{ruqi} lateness p99 ms", report.median(ruqi, "p99"), "<=",
                      TARGET_P99_MS)
        report.target(f"{ruqi} CPU % of a core per replica",
                      report.median(ruqi, "cpu %/process"), "<=", TARGET_CPU)
        report.target(f"{ruqi} CPU ms per fire", report.median(ruqi, "ms/fire"), "<=",
                      TARGET_MS_PER_FIRE)
    return report.finish()


if __name__ == "__main__":
    sys.exit(main())
