"""Where a xingqiao hop's time goes: one hop split by the message records' own times.

Runs ``--flows`` linear flows of 10 no-op tasks one after the other (the fleet of
``bench/xingqiao.py``: one no-op consumer, xingqiao on SQLite or ``--mariadb``), then reads
every task's and every completion notice's record from Redis (server clock, ms) and splits
each hop - task k's handler returned -> task k+1 claimed - into:

- A: task k recorded -> its notice published (the consumer: complete, then notify);
- B: notice published -> claimed by xingqiao (its fetcher's poll pause);
- C: notice claimed -> task k+1 published (xingqiao: read, CAS, read the flow, CAS,
  publish);
- D: task k+1 published -> claimed by the consumer (its fetcher's poll pause).

Prints p50 / mean of each and the CPU per task of xingqiao and of the consumer (the
client's status polls (list_jobs by job_id), every 50 ms, are in xingqiao's). About 30 s.

    .venv/bin/python bench/xingqiao_hops.py [--flows 20] [--mariadb]
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import statistics
import sys
from pathlib import Path

import redis
import xingqiao as bench

from butterfly_common.testing import ButterflyService, RedisServer, mariadb_database

NOTICES = "/xingqiao/task_notice"
PARTS = ("A record -> notice", "B notice waits", "C xingqiao", "D task waits", "hop")


def split(tasks: dict[str, dict], notices: dict[str, dict], jobs: list[int]
          ) -> dict[str, list[float]]:
    """Each hop of each flow, cut at the records' times (ms)."""
    parts: dict[str, list[float]] = {p: [] for p in PARTS}
    for job in jobs:
        chain = sorted((t for t in tasks.values() if t["id"].startswith(f"xq{job}.")),
                       key=lambda t: int(t["id"].split(".")[2]))
        for done, nxt in itertools.pairwise(chain):
            notice = notices[done["id"]]

            def at(rec: dict, field: str) -> float:
                return float(rec[field])

            parts[PARTS[0]].append(at(notice, "created_at") - at(done, "ended_at"))
            parts[PARTS[1]].append(at(notice, "started_at") - at(notice, "created_at"))
            parts[PARTS[2]].append(at(nxt, "created_at") - at(notice, "started_at"))
            parts[PARTS[3]].append(at(nxt, "started_at") - at(nxt, "created_at"))
            parts[PARTS[4]].append(at(nxt, "started_at") - at(done, "ended_at"))
    return parts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flows", type=int, default=20)
    parser.add_argument("--mariadb", action="store_true",
                        help="xingqiao on a private database of the MariaDB at 127.0.0.1:3306")
    args = parser.parse_args()
    database = mariadb_database("bf_bench") if args.mariadb else contextlib.nullcontext(None)
    with database as db_url, RedisServer() as server, \
            ButterflyService("mq_noop_app:service", bench.env(server.url)) as consumer, \
            ButterflyService("xingqiao", bench.env(server.url, **(
                {"BUTTERFLY_DB_URL": db_url} if db_url else {}))) as xq:
        client = bench.Client(xq.url)
        client.post("flow_type_create", name="linear10", tasks=bench.linear(10))
        for _ in range(3):  # warm up
            bench.run_flow(client, "linear10")
        cpu0 = [bench.cpu_seconds(s) for s in (xq, consumer)]
        jobs = []
        for _ in range(args.flows):
            job = client.post("create_job", job_namespace="bench", job_type="linear10")
            bench.wait_until(lambda j=job["job_id"]: client.status(j) == "finished", 60,
                             interval=bench.POLL)
            jobs.append(job["job_id"])
        cpu = [bench.cpu_seconds(s) - c for s, c in zip((xq, consumer), cpu0, strict=True)]
        records = redis.Redis.from_url(server.url, decode_responses=True)
        tasks, notices = {}, {}
        for key in records.scan_iter("bc:*:msg:*", count=1000):
            rec = records.hgetall(key)
            if rec.get("topic") == "/bench/noop":
                tasks[rec["id"]] = rec
            elif rec.get("topic") == NOTICES:
                notices[json.loads(rec["data"])["msg_id"]] = rec
    print(f"{'MariaDB' if args.mariadb else 'SQLite'}, {args.flows} flows of 10; load "
          f"{Path('/proc/loadavg').read_text().split()[:3]}")
    print(f"CPU ms a task: xingqiao {1000 * cpu[0] / (10 * args.flows):.2f}, consumer "
          f"{1000 * cpu[1] / (10 * args.flows):.2f}")
    for name, values in split(tasks, notices, jobs).items():
        print(f"{name:20s} p50 {statistics.median(values):6.2f} ms  mean "
              f"{statistics.mean(values):6.2f} ms  (n={len(values)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
