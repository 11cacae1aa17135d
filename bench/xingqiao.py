"""Flow latency and throughput: xingqiao against a Dramatiq pipeline on the same Redis.

1. Latency: a linear flow of 10 no-op tasks (``/bench/noop`` served by one consumer
   process), create_job -> finished as the client sees it (polling list_jobs by job_id every
   50 ms; the flow's own job_cost is printed too), 20 flows one after the other: p50 /
   p90. Beside it a Dramatiq ``pipeline`` of 10 no-op actors (one ``dramatiq`` worker
   process, 8 threads) on the same redis-server,
   ``pipeline.run()`` -> ``get_result(block=True)``: p50 / p90, and the ratio. Dramatiq keeps
   no durable state per step; xingqiao writes every transition to its database (SQLite
   here) and publishes a message plus a completion notice per task.
2. Throughput: 500 3-task linear flows created at once (16 client threads), until all are
   finished: flows/s and tasks/s.
3. Dynamic map: one flow whose map task runs ``/bench/item`` over a 1 000-item list of its
   job_extra (``max_parallel`` 1 000) then a collect step: create_job -> every item
   dispatched (none waiting), and -> finished (issue 29: <= 1 s and <= 5 s).

Goals (issue 10): p50 < 1 s (the original: >= 200 s for 10 tasks); <= 3x Dramatiq.
``--rounds`` latency rounds (default 3; xingqiao and Dramatiq alternate, the median is
kept), then ``--throughput-rounds`` (default 1) of the throughput run; bench/harness.py's
Report prints the table, the load and the verdicts and writes var/bench/xingqiao.json.
About 80 s by default.

    .venv/bin/python bench/xingqiao.py [--rounds 3] [--flows 20] [--throughput 500]
        [--map 1000] [--map-rounds 3] [--only-map] [--mariadb]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
from harness import Report

from butterfly_common.testing import (
    ButterflyService,
    RedisServer,
    child_pids,
    mariadb_database,
    wait_until,
)

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
TOKEN = "bench-admin-token-0123456789"  # noqa: S105 - a throw-away fleet
MAX_IDLE = "0.05"  # consumers' idle poll ceiling (BUTTERFLY_CONSUME_MAX_IDLE)


def env(redis_url: str, **extra: str) -> dict[str, str]:
    return {"BUTTERFLY_REDIS_URL": redis_url, "BUTTERFLY_ADMIN_TOKEN": TOKEN,
            "BUTTERFLY_CONSUME": "1", "BUTTERFLY_CONSUME_MAX_IDLE": MAX_IDLE,
            "PYTHONPATH": str(HERE / "mq_noop_app") + os.pathsep + str(HERE), **extra}


class Client:
    def __init__(self, url: str) -> None:
        self.url = url
        self.http = requests.Session()
        self.auth = {"Authorization": f"Bearer {TOKEN}"}

    def post(self, route: str, **body: object) -> dict:
        reply = self.http.post(f"{self.url}/xingqiao/{route}", json=body, headers=self.auth,
                               timeout=60)
        reply.raise_for_status()
        return reply.json()["data"]

    def detail(self, job_id: int) -> dict:
        reply = self.http.get(f"{self.url}/xingqiao/get_job_detail",
                              params={"job_id": job_id}, timeout=60)
        return reply.json()["data"]

    def status(self, job_id: int) -> str:
        """The flow's status by ``list_jobs`` filtered on its id: 2 selects of the flow's
        row, where ``get_job_detail`` reads its tasks, maps, sub-flows and saga too (6
        selects): the client's polls were a third of xingqiao's CPU a task."""
        reply = self.http.get(f"{self.url}/xingqiao/list_jobs",
                              params={"job_id": job_id, "page_size": 1}, timeout=60)
        return reply.json()["data"]["list"][0]["job_status"]

    def finished(self) -> int:
        reply = self.http.get(f"{self.url}/xingqiao/list_jobs",
                              params={"job_status": "finished", "page_size": 1}, timeout=60)
        return reply.json()["data"]["total"]


def linear(n: int) -> list[dict]:
    return [{"label": f"t{i}", "cmd": "/bench/noop",
             **({"dependencies": [f"t{i - 1}"]} if i else {})} for i in range(n)]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def cpu_seconds(service: ButterflyService) -> float:
    """User + system CPU of a service's master and workers so far (from /proc)."""
    assert service.proc is not None
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in [service.proc.pid, *child_pids(service.proc.pid)]:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


POLL = 0.05  # the client's status poll (list_jobs by job_id) while a latency flow runs


def run_flow(client: Client, job_type: str) -> tuple[float, float]:
    """create_job -> finished as the client sees it; (seconds, the flow's own job_cost)."""
    t0 = time.perf_counter()
    job_id = client.post("create_job", job_namespace="bench", job_type=job_type)["job_id"]
    wait_until(lambda: client.status(job_id) == "finished", 60, interval=POLL)
    took = time.perf_counter() - t0
    return took, client.detail(job_id)["job_cost"]


def xingqiao_round(report: Report, client: Client, services: tuple[ButterflyService, ...],
                   flows: int) -> None:
    times, costs = [], []
    cpu0 = [cpu_seconds(s) for s in services]
    for _ in range(flows):
        took, cost = run_flow(client, "linear10")
        times.append(took)
        costs.append(cost)
    cpu = [cpu_seconds(s) - c for s, c in zip(services, cpu0, strict=True)]
    report.add(XQ, "p50 s", statistics.median(times))
    report.add(XQ, "p90 s", pct(times, 0.9))
    report.add(XQ, "job_cost p50 s", statistics.median(costs))
    report.add(XQ, "cpu ms/task xq", 1000 * cpu[0] / (10 * flows))
    report.add(XQ, "cpu ms/task cons", 1000 * cpu[1] / (10 * flows))


def throughput_round(report: Report, client: Client, flows: int) -> None:
    base = client.finished()
    t0 = time.perf_counter()
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda _: client.post("create_job", job_namespace="bench",
                                            job_type="linear3"), range(flows)))
    created = time.perf_counter() - t0
    wait_until(lambda: client.finished() - base >= flows, 600, interval=0.1,
               what="throughput flows finished")
    total = time.perf_counter() - t0
    report.add(TP, "flows/s", flows / total)
    report.add(TP, "tasks/s", 3 * flows / total)
    report.add(TP, "created in s", created)
    report.add(TP, "finished in s", total)


class DramatiqWorker:
    """One ``dramatiq`` worker process (1 process, 8 threads) for the pipeline actor."""

    def __init__(self, redis_url: str) -> None:
        os.environ["BENCH_REDIS_URL"] = redis_url
        sys.path.insert(0, str(HERE / "mq_noop_app"))
        self.env = {**os.environ, "PYTHONPATH": str(HERE / "mq_noop_app")}

    def __enter__(self) -> DramatiqWorker:
        self.tmp = tempfile.TemporaryDirectory()
        self.log = open(Path(self.tmp.name) / "dq.log", "wb")
        self.proc = subprocess.Popen([str(BIN / "dramatiq"), "dramatiq_pipeline",
                                      "--processes", "1", "--threads", "8"], env=self.env,
                                     stdout=self.log, stderr=subprocess.STDOUT)
        for _ in range(3):  # warm up (and wait for the worker to be up)
            self.run_once()
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        self.proc.wait(30)
        self.log.close()
        self.tmp.cleanup()

    def run_once(self) -> float:
        import dramatiq
        from dramatiq_pipeline import step

        t0 = time.perf_counter()
        pipe = dramatiq.pipeline([step.message() for _ in range(10)]).run()
        assert pipe.get_result(block=True, timeout=60_000) == 10
        return time.perf_counter() - t0

    def round(self, report: Report, flows: int) -> None:
        times = [self.run_once() for _ in range(flows)]
        report.add(DQ, "p50 s", statistics.median(times))
        report.add(DQ, "p90 s", pct(times, 0.9))


XQ = "xingqiao linear10"
DQ = "dramatiq pipeline10"
MAP = "xingqiao map"


def map_types(client: Client, items: int) -> None:
    client.post("flow_type_create", name="map", tasks=[
        {"label": "each", "cmd": "/bench/item", "map_over": "items", "max_parallel": items},
        {"label": "collect", "cmd": "/bench/noop", "dependencies": ["each"]}])


def map_round(report: Report, client: Client, items: int) -> None:
    """create_job -> no item waiting (all dispatched) -> the flow finished."""
    t0 = time.perf_counter()
    job_id = client.post("create_job", job_namespace="bench", job_type="map",
                         job_extra={"items": list(range(items))})["job_id"]
    created = time.perf_counter() - t0
    dispatched = None
    deadline = time.perf_counter() + 120
    while time.perf_counter() < deadline:
        job = client.detail(job_id)
        progress = job.get("maps", {}).get("each", {})
        if dispatched is None and progress.get("total") == items \
                and not progress.get("waiting"):
            dispatched = time.perf_counter() - t0
        if job["job_status"] != "started":
            break
        time.sleep(0.01)
    finished = time.perf_counter() - t0
    assert job["job_status"] == "finished", job
    report.add(MAP, "create_job s", created)
    report.add(MAP, "dispatched s", dispatched if dispatched is not None else finished)
    report.add(MAP, "finished s", finished)
    report.add(MAP, "job_cost s", job["job_cost"])
TP = "xingqiao 3-task flows"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="latency rounds; median kept")
    parser.add_argument("--flows", type=int, default=20, help="latency flows per round")
    parser.add_argument("--throughput", type=int, default=500, help="flows at once")
    parser.add_argument("--throughput-rounds", type=int, default=1)
    parser.add_argument("--map", type=int, default=1000, help="items of the map flow")
    parser.add_argument("--map-rounds", type=int, default=3)
    parser.add_argument("--only-map", action="store_true", help="only the map rounds")
    parser.add_argument("--mariadb", action="store_true",
                        help="xingqiao on a private database of the MariaDB at 127.0.0.1:3306 "
                             "(root, no password), as the fleet runs it; default SQLite")
    args = parser.parse_args()
    report = Report("xingqiao", f"xingqiao: a linear flow of 10 no-op tasks vs a Dramatiq "
                                f"pipeline of 10 ({args.flows} flows a round), and "
                                f"{args.throughput} 3-task flows at once, and a map of "
                                f"{args.map} items ({'MariaDB' if args.mariadb else 'SQLite'}, "
                                "one Redis)")
    database = mariadb_database("bf_bench") if args.mariadb else contextlib.nullcontext(None)
    with database as db_url, RedisServer() as redis, \
            ButterflyService("mq_noop_app:service", env(redis.url)) as consumer, \
            ButterflyService("xingqiao", env(redis.url, **(
                {"BUTTERFLY_DB_URL": db_url} if db_url else {}))) as xq, \
            (contextlib.nullcontext() if args.only_map else DramatiqWorker(redis.url)) as dq:
        client = Client(xq.url)
        client.post("flow_type_create", name="linear10", tasks=linear(10))
        client.post("flow_type_create", name="linear3", tasks=linear(3))
        map_types(client, args.map)
        for _ in range(3):  # warm up: connections, scripts, SQLite pages
            run_flow(client, "linear10")
        for _ in range(0 if args.only_map else args.rounds):
            xingqiao_round(report, client, (xq, consumer), args.flows)
            dq.round(report, args.flows)
        for _ in range(0 if args.only_map else args.throughput_rounds):
            throughput_round(report, client, args.throughput)
        for _ in range(args.map_rounds):
            map_round(report, client, args.map)
    report.note(XQ, f"create_job -> finished as the client sees it (polling every "
                    f"{POLL * 1000:g} ms); job_cost: the flow's own insert -> verdict; CPU "
                    "per task of xingqiao and of the no-op consumer (client polls included)")
    report.note(DQ, "pipeline.run() -> get_result(block=True); keeps no durable state")
    report.note(TP, f"{args.throughput} linear3 flows created by 16 client threads, until "
                    "all are finished")
    report.note(MAP, f"one flow mapping /bench/item over {args.map} items (max_parallel "
                     f"{args.map}), then a collect step; create_job -> no item waiting, "
                     "-> finished (client polls every 10 ms)")
    if not args.only_map:
        report.target("xingqiao p50 s", report.median(XQ, "p50 s"), "<=", 1.0)
        report.target("xingqiao / dramatiq p50", report.ratio(XQ, DQ, "p50 s"), "<=", 3.0)
    report.target(f"map of {args.map}: dispatched s", report.median(MAP, "dispatched s"),
                  "<=", 1.0)
    report.target(f"map of {args.map}: finished s", report.median(MAP, "finished s"),
                  "<=", 5.0)
    return report.finish()


if __name__ == "__main__":
    sys.exit(main())
