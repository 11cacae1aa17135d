"""``make bench``: every bench in turn, then one summary of their targets.

Each bench runs as its own process (fresh servers, nothing shared), prints its own table
and writes ``var/bench/<name>.json`` (see harness.py); this script then reads those files
back and prints every target with its verdict, the load each bench started under, and the
total time (the budget is 10 minutes). Exit status 1 when a target was missed on a machine
quiet enough for a verdict.

    make bench                       # all of them
    .venv/bin/python bench/run_all.py http_overhead mq_throughput
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from harness import CORES, OUT_DIR, fmt_load, loadavg, num, wait_at_most

HERE = Path(__file__).resolve().parent
BENCHES = ("http_overhead", "mq_throughput", "mq_bulk_publish", "mq_bulk_requeue",
           "scheduler_accuracy", "ruqi_vs_apscheduler", "ruqi_backfill", "wuxing",
           "wuxing_fanout", "xingqiao", "canghai")


def main(argv: list[str]) -> int:
    names = argv or list(BENCHES)
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        print(f"unknown bench {unknown}; choose from {', '.join(BENCHES)}", file=sys.stderr)
        return 2
    # the machine before this run: each bench's verdict also depends on it (harness.py)
    env = {**os.environ, "BENCH_SUITE_LOAD": f"{settle_load():.2f}"}
    t0 = time.monotonic()
    ran: dict[str, tuple[int, float, float]] = {}
    for name in names:
        (OUT_DIR / f"{name}.json").unlink(missing_ok=True)  # no stale figures in the summary
        print(f"\n===== {name} =====", flush=True)
        started = time.monotonic()
        # a fixed argv of our own files, never a shell string
        rc = subprocess.call([sys.executable, str(HERE / f"{name}.py")], env=env)
        ran[name] = (rc, started - t0, time.monotonic() - started)
    return summary(ran, time.monotonic() - t0)


def settle_load() -> float:
    """The 1-minute load average once it is at most the core count, or after
    ``BENCH_SUITE_SETTLE_SECONDS`` (120) of waiting for that: what ran just before
    ``make bench`` (a previous run, a test suite) stays in the average for a minute or two."""
    limit = float(os.environ.get("BENCH_SUITE_SETTLE_SECONDS", "120"))
    _, load = wait_at_most(lambda: loadavg()[0], CORES, limit, "load average", pause=2)
    return load


def summary(ran: dict[str, tuple[int, float, float]], total: float) -> int:
    print("\n===== summary =====")
    print(f"{'bench':<20} {'target':<46} {'value':>9} {'goal':>10}  verdict")
    missed = False
    for name, (rc, _, seconds) in ran.items():
        path = OUT_DIR / f"{name}.json"
        if not path.exists():
            print(f"{name:<20} (no result: exit status {rc}, see its output above)")
            missed = True
            continue
        doc = json.loads(path.read_text())
        for t in doc["targets"]:
            verdict = ("no verdict" if t["met"] is None else "met" if t["met"] else "MISSED")
            missed |= t["met"] is False
            print(f"{name:<20} {t['label'][:46]:<46} {num(t['value']):>9} "
                  f"{t['op']} {num(t['goal']):<7}  {verdict}")
        refused = f"; no verdict: {doc['verdict_refused']}" if doc["verdict_refused"] else ""
        print(f"{'':<20} ({seconds:.0f} s, load at start {fmt_load(doc['load_before'])}, "
              f"run queue {doc['run_queue_before']:.2f}, "
              f"CPU stolen {doc.get('steal_percent', 0.0):.1f} %{refused})")
    print(f"\nall benches: {total / 60:.1f} min (budget 10 min); tables in {OUT_DIR}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
