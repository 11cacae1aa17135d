"""ruqi backfill: 10 000 past slots of a job whose command publishes to a baichuan topic.

Starts its own redis-server, its own database (a SQLite file in a temp dir, or a private
MariaDB database ``ruqi_bench_<random>`` dropped afterwards) and ``--replicas`` real
``butterfly serve ruqi`` processes (gunicorn, one worker each, every RUQI_* setting at its
production default). A fake consumer is registered for the topic (baichuan refuses a
publish to a topic nobody serves); nothing consumes, so every message stays queued and
can be counted.

Per round, a fresh job (cron ``* * * * * *``: one slot a second, with ``--jitter``),
paused at once so that only the backfill writes its history, then through one replica's
HTTP API:

* ``preview s``: ``backfill_job`` with ``dry_run=true`` over ``--slots`` seconds (the
  slots listed with their jitter, nothing run);
* ``backfill s``: from the ``backfill_job`` call until every slot has its history row
  (each publishes one message with its own id ``ruqi:<job>:<ms>``); checked: ``--slots``
  rows, all ``ok``, ``--slots`` messages queued on the topic;
* ``repeat s``: the same backfill again, which must run nothing (``to_run`` 0, no new
  message).

The replica starts and publishes a topic job's backfill slots in pipelined batches
(``Engine._run_topic_batch``: ``publish_many``, one message and one history row per slot).

Target (issue 25): 10 000 slots backfilled in <= 10 s.

    .venv/bin/python bench/ruqi_backfill.py                    # 3 rounds, SQLite
    .venv/bin/python bench/ruqi_backfill.py --db mysql --rounds 1
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests
from harness import Report, database_url

from butterfly_common.db import open_database
from butterfly_common.mq import Broker
from butterfly_common.redis_client import make_redis
from butterfly_common.testing import (
    ButterflyService,
    RedisServer,
    wait_until,
)

OPERATOR = "bench-operator-token-0123"
TOPIC = "/bench/backfill"
TARGET_S = 10.0


def api(url: str, name: str, **params: Any) -> dict[str, Any]:
    """POST ``/ruqi/<name>`` with a JSON body; anything but ``stat: OK`` is fatal."""
    resp = requests.post(f"{url}/ruqi/{name}", json=params, timeout=120,
                         headers={"Authorization": f"Bearer {OPERATOR}"})
    body = resp.json()
    if body.get("stat") != "OK":
        raise RuntimeError(f"{name} {params}: {body} {resp.headers.get('x-reason')}")
    return body.get("data") or {}


class Counter:
    """History rows of one job, by status, on a connection of our own."""

    def __init__(self, db_url: str) -> None:
        self.db = open_database(db_url)

    def statuses(self, job_id: str) -> dict[str, int]:
        sql = ("SELECT status, COUNT(*) FROM ruqi_job_history WHERE job_id = ? "
               "GROUP BY status").replace("?", self.db.param)
        with self.db.connection_context():  # a fresh snapshot each poll (MariaDB)
            rows = self.db.execute_sql(sql, (job_id,)).fetchall()
        return {str(status): int(n) for status, n in rows}

    def close(self) -> None:
        getattr(self.db, "close_all", self.db.close)()


def utc(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%S+0000")


def one_round(url: str, counter: Counter, broker: Broker, job_id: str,
              args: argparse.Namespace, report: Report) -> None:
    api(url, "add_job", job_trigger="cron", job_id=job_id, job_name="bench",
        rule="* * * * * *", cmd=f'{TOPIC}#{{"bench": "backfill"}}', timezone="UTC",
        jitter=args.jitter)
    api(url, "pause_job", job_id=job_id, note="bench: only the backfill runs")
    end = float(int(time.time()) - 60)
    start = end - (args.slots - 1)
    queued_before = broker.counts(TOPIC)["queued"]

    began = time.perf_counter()
    preview = api(url, "backfill_job", job_id=job_id, start=utc(start), end=utc(end),
                  dry_run=True)
    report.add("ruqi backfill", "preview s", time.perf_counter() - began)
    if preview["slots"] != args.slots or len(preview["slot_times"]) != args.slots:
        raise RuntimeError(f"preview: {preview['slots']} slots, expected {args.slots}")

    began = time.perf_counter()
    data = api(url, "backfill_job", job_id=job_id, start=utc(start), end=utc(end))
    if data["to_run"] != args.slots:
        raise RuntimeError(f"backfill queued {data['to_run']} slots, expected {args.slots}")
    wait_until(lambda: sum(counter.statuses(job_id).values()) >= args.slots,
               timeout=args.timeout, interval=0.02, what=f"{args.slots} history rows")
    took = time.perf_counter() - began
    report.add("ruqi backfill", "backfill s", took)
    report.add("ruqi backfill", "slots/s", args.slots / took)
    statuses = counter.statuses(job_id)
    queued = broker.counts(TOPIC)["queued"] - queued_before
    if statuses != {"ok": args.slots} or queued != args.slots:
        raise RuntimeError(f"history {statuses}, {queued} messages queued")

    began = time.perf_counter()
    again = api(url, "backfill_job", job_id=job_id, start=utc(start), end=utc(end))
    report.add("ruqi backfill", "repeat s", time.perf_counter() - began)
    time.sleep(1.0)  # anything run twice would show now
    if again["to_run"] != 0 or broker.counts(TOPIC)["queued"] - queued_before != args.slots \
            or counter.statuses(job_id) != {"ok": args.slots}:
        raise RuntimeError(f"the second backfill ran something: {again}")


def run(args: argparse.Namespace, tmp: Path, report: Report) -> None:
    with contextlib.ExitStack() as stack:
        redis_url = stack.enter_context(RedisServer()).url
        db_url = stack.enter_context(database_url(args.db, tmp))
        env = {"BUTTERFLY_REDIS_URL": redis_url, "BUTTERFLY_DB_URL": db_url,
               "BUTTERFLY_WORKERS": "1", "RUQI_TIMEZONE": "UTC", "TMPDIR": str(tmp),
               "BUTTERFLY_OPERATOR_TOKEN": OPERATOR}
        replicas = [ButterflyService("ruqi", env) for _ in range(args.replicas)]
        for replica in replicas:
            stack.callback(shutil.rmtree, replica.workdir, ignore_errors=True)
            stack.callback(replica.stop)
        for replica in replicas:  # one at a time: SQLite dislikes concurrent DDL
            replica.start()
        broker = Broker(make_redis(redis_url))
        broker.heartbeat("bench-consumer", [TOPIC], ttl=3600)
        counter = Counter(db_url)
        stack.callback(counter.close)
        for r in range(args.rounds):
            one_round(replicas[r % len(replicas)].url, counter, broker, f"bf{r}", args,
                      report)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slots", type=int, default=10_000, help="slots per backfill")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (3)")
    parser.add_argument("--replicas", type=int, default=1, help="ruqi processes (1)")
    parser.add_argument("--jitter", type=float, default=0.5, help="the job's jitter, s")
    parser.add_argument("--db", choices=("sqlite", "mysql"), default="sqlite")
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="seconds a backfill may take before the bench gives up")
    args = parser.parse_args()
    report = Report("ruqi_backfill", f"ruqi backfill_job: {args.slots} slots to a topic, "
                    f"{args.replicas} replica(s), {args.db}")
    tmp = Path(tempfile.mkdtemp(prefix="ruqi-backfill-"))
    try:
        run(args, tmp, report)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    report.target(f"backfill {args.slots} slots, s (median)",
                  report.median("ruqi backfill", "backfill s"), "<=", TARGET_S)
    return report.finish()


if __name__ == "__main__":
    sys.exit(main())
