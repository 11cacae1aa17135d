"""Flow latency and throughput: xingqiao against a Dramatiq pipeline on the same Redis.

1. Latency: a linear flow of 10 no-op tasks (``/bench/noop`` served by one consumer
   process), create_job -> finished as the client sees it (polling get_job_detail every
   50 ms; the flow's own job_cost is printed too), 20 flows one after the other: p50 /
   p90. Beside it a Dramatiq ``pipeline`` of 10 no-op actors (one ``dramatiq`` worker
   process, 8 threads) on the same redis-server,
   ``pipeline.run()`` -> ``get_result(block=True)``: p50 / p90, and the ratio. Dramatiq keeps
   no durable state per step; xingqiao writes every transition to its database (SQLite
   here) and publishes a message plus a completion notice per task.
2. Throughput: 500 3-task linear flows created at once (16 client threads), until all are
   finished: flows/s and tasks/s.

Goals (issue 10): p50 < 1 s (the original: >= 200 s for 10 tasks); <= 3x Dramatiq.

    .venv/bin/python bench/xingqiao.py [--flows 20] [--throughput 500]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from butterfly_common.testing import ButterflyService, RedisServer, child_pids, wait_until

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
        return self.detail(job_id)["job_status"]

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


def bench_xingqiao(redis_url: str, flows: int, throughput: int) -> dict[str, float]:
    with ButterflyService("mq_noop_app:service", env(redis_url)) as consumer, \
            ButterflyService("xingqiao", env(redis_url)) as xq:
        client = Client(xq.url)
        client.post("flow_type_create", name="linear10", tasks=linear(10))
        client.post("flow_type_create", name="linear3", tasks=linear(3))
        for _ in range(3):  # warm up: connections, scripts, SQLite pages
            job_id = client.post("create_job", job_namespace="bench",
                                 job_type="linear10")["job_id"]
            wait_until(lambda j=job_id: client.status(j) == "finished", 60, interval=0.05)
        times, costs = [], []
        cpu0 = cpu_seconds(xq), cpu_seconds(consumer)
        for _ in range(flows):
            t0 = time.perf_counter()
            job_id = client.post("create_job", job_namespace="bench",
                                 job_type="linear10")["job_id"]
            wait_until(lambda j=job_id: client.status(j) == "finished", 60, interval=0.05)
            times.append(time.perf_counter() - t0)
            costs.append(client.detail(job_id)["job_cost"])
        cpu = (cpu_seconds(xq) - cpu0[0], cpu_seconds(consumer) - cpu0[1])
        base = client.finished()
        t0 = time.perf_counter()
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda _: client.post("create_job", job_namespace="bench",
                                                job_type="linear3"), range(throughput)))
        created = time.perf_counter() - t0
        wait_until(lambda: client.finished() - base >= throughput, 600, interval=0.1,
                   what="throughput flows finished")
        total = time.perf_counter() - t0
    return {"p50": statistics.median(times), "p90": pct(times, 0.9), "create_s": created,
            "total_s": total, "cost_p50": statistics.median(costs),
            "cpu_xq_ms": 1000 * cpu[0] / (10 * flows),
            "cpu_consumer_ms": 1000 * cpu[1] / (10 * flows)}


def bench_dramatiq(redis_url: str, flows: int) -> dict[str, float]:
    os.environ["BENCH_REDIS_URL"] = redis_url
    sys.path.insert(0, str(HERE / "mq_noop_app"))
    import dramatiq
    from dramatiq_pipeline import step

    worker_env = {**os.environ, "PYTHONPATH": str(HERE / "mq_noop_app")}
    with tempfile.TemporaryDirectory() as tmp, open(Path(tmp) / "dq.log", "wb") as log:
        proc = subprocess.Popen([str(BIN / "dramatiq"), "dramatiq_pipeline", "--processes",
                                 "1", "--threads", "8"], env=worker_env, stdout=log,
                                stderr=subprocess.STDOUT)
        try:
            def run_once() -> float:
                t0 = time.perf_counter()
                pipe = dramatiq.pipeline([step.message()] + [step.message()
                                                             for _ in range(9)]).run()
                assert pipe.get_result(block=True, timeout=60_000) == 10
                return time.perf_counter() - t0

            for _ in range(3):
                run_once()
            times = [run_once() for _ in range(flows)]
        finally:
            proc.terminate()
            proc.wait(30)
    return {"p50": statistics.median(times), "p90": pct(times, 0.9)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flows", type=int, default=20)
    parser.add_argument("--throughput", type=int, default=500)
    args = parser.parse_args()
    with RedisServer() as redis:
        xq = bench_xingqiao(redis.url, args.flows, args.throughput)
        dq = bench_dramatiq(redis.url, args.flows)
    load = os.getloadavg()
    ratio = xq["p50"] / dq["p50"]
    flows_s = args.throughput / xq["total_s"]
    print(f"\nxingqiao bench ({args.flows} flows each; load average {load[0]:.2f} "
          f"{load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs, shared machine)")
    print("| measurement | p50 | p90 | goal |")
    print("|---|---|---|---|")
    print(f"| xingqiao linear flow, 10 no-op tasks | {xq['p50']:.3f} s | {xq['p90']:.3f} s "
          f"| < 1 s |")
    print(f"| ... the flow's own job_cost (insert -> verdict) | {xq['cost_p50']:.3f} s | | |")
    print(f"| ... CPU per task: xingqiao {xq['cpu_xq_ms']:.1f} ms, consumer "
          f"{xq['cpu_consumer_ms']:.1f} ms (client polling included) | | | |")
    print(f"| Dramatiq pipeline, 10 no-op actors | {dq['p50']:.3f} s | {dq['p90']:.3f} s | |")
    print(f"| ratio xingqiao / Dramatiq (p50) | {ratio:.2f}x | | <= 3x |")
    print(f"| throughput: {args.throughput} 3-task flows | {flows_s:.1f} flows/s | "
          f"{3 * flows_s:.1f} tasks/s | (created in {xq['create_s']:.1f} s, all finished "
          f"in {xq['total_s']:.1f} s) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
