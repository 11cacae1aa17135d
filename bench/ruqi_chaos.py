"""ruqi chaos: 1 000 jobs at 1 s for 5 minutes while one of 3 replicas is SIGKILLed and
restarted every 20 s (issue 25: 0 duplicates; every fire ran or is recorded, the missed ones
with a reason; the count of missed printed).

The cluster is :mod:`scheduler_accuracy`'s (its own redis-server, a private MariaDB database
or a SQLite file, ``--replicas`` real ``butterfly serve ruqi`` processes with production
settings, jobs POSTing to an in-process callee). Every ``--kill-every`` seconds the next
replica in turn loses its gunicorn master and worker to SIGKILL - a crash, not a stop - and
is started again on its port, as a supervisor would. After ``--seconds``, every run time of
every job up to the end must have exactly one history row (``ok``, ``lost``: started by a
replica that died, never re-run; ``missed``: its reason in the row) and nothing may reach
the callee twice.

    .venv/bin/python bench/ruqi_chaos.py [--jobs 1000] [--seconds 300] [--kill-every 20]
        [--db mysql|sqlite]

``tests/integration/test_ruqi_chaos.py`` is the short run in ``make test``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from harness import Report
from scheduler_accuracy import Cluster, percentile, query, until

from butterfly_common.testing import ButterflyService, child_pids, wait_until

NAME = "chaos"


def crash(replica: ButterflyService) -> None:
    """SIGKILL the gunicorn master (so it cannot respawn), then its worker."""
    assert replica.proc is not None
    workers = child_pids(replica.proc.pid)
    replica.proc.kill()
    for pid in workers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    replica.proc.wait(10)
    wait_until(lambda: not any(Path(f"/proc/{pid}").exists() for pid in workers), 10,
               what="killed worker gone")


def run(args: argparse.Namespace, tmp: Path, report: Report) -> None:
    with contextlib.ExitStack() as stack:
        cluster = Cluster(args, tmp, stack)
        t0 = time.time() + 1.0
        end = t0 + args.seconds
        kills = 0
        restart = []
        while t0 + args.kill_every * (kills + 1) < end:
            until(t0 + args.kill_every * (kills + 1))
            victim = cluster.replicas[kills % len(cluster.replicas)]
            crash(victim)
            began = time.time()
            victim.start()
            restart.append(time.time() - began)
            kills += 1
            print(f"kill {kills} at +{time.time() - t0:.0f}s", file=sys.stderr, flush=True)
        until(end)
        expected = cluster.expected(t0, end - 1.0)

        def rows() -> dict[tuple[str, int], list[tuple[str, str]]]:
            out: dict[tuple[str, int], list[tuple[str, str]]] = {}
            for job, ts, status, output in query(
                    cluster.db_url, "SELECT job_id, scheduled_time, status, cmd_output FROM "
                    "ruqi_job_history WHERE scheduled_time >= ?", (t0,)):
                out.setdefault((job, round(ts * 1000)), []).append((status, output))
            return out

        with contextlib.suppress(TimeoutError):  # what is missing is counted below
            wait_until(lambda: expected <= set(rows()), 40, interval=1.0,
                       what="every fire has a row")
        recorded = rows()
        arrived = cluster.arrivals()

    statuses = Counter(st for k in expected for st, _ in recorded.get(k, []))
    reasons = Counter(out.split(":")[0][:60] for k in expected
                      for st, out in recorded.get(k, []) if st == "missed")
    unaccounted = sum(1 for k in expected if k not in recorded)
    duplicates = (sum(len(v) - 1 for k, v in arrived.items() if k in expected)
                  + sum(len(v) - 1 for k, v in recorded.items() if k in expected))
    late = sorted((arrived[k][0] - k[1] / 1000) * 1000 for k in expected if k in arrived)
    report.add(NAME, "kills", kills)
    report.add(NAME, "fires expected", len(expected))
    report.add(NAME, "ran (ok)", statuses["ok"])
    report.add(NAME, "lost (killed mid-fire)", statuses["lost"])
    report.add(NAME, "missed", statuses["missed"])
    report.add(NAME, "unaccounted", unaccounted)
    report.add(NAME, "duplicates", duplicates)
    report.add(NAME, "lateness p99 ms", percentile(late, 99) if late else 0.0)
    report.add(NAME, "restart s (max)", max(restart) if restart else 0.0)
    report.note(NAME, f"statuses {dict(statuses)}; missed reasons {dict(reasons) or 'none'}")
    report.target("duplicates", duplicates, "<=", 0)
    report.target("fires neither run nor recorded", unaccounted, "<=", 0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=300.0)
    parser.add_argument("--kill-every", type=float, default=20.0)
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--db", choices=("sqlite", "mysql"), default="mysql")
    args = parser.parse_args()
    report = Report("ruqi_chaos", f"ruqi: {args.jobs} jobs at 1 s, {args.replicas} replicas, "
                                  f"{args.db}, {args.seconds:g} s, a replica SIGKILLed and "
                                  f"restarted every {args.kill_every:g} s")
    with tempfile.TemporaryDirectory(prefix="bf-ruqichaos-") as tmp:
        run(args, Path(tmp), report)
    return report.finish()


if __name__ == "__main__":
    sys.exit(main())
