"""wuxing: cached reads vs core's ping, CAS writes on MariaDB, watch notification latency.

One run, side by side, same gunicorn settings (gthread 2x8) for wuxing and core:

1. ``GET /wuxing/instance_get`` (a cache hit) vs ``GET /demo_api/ping`` on core, both
   loaded by wrk -c16 in 1 s slices with fresh connections (as in bench/http_overhead.py:
   one split of the connections between the two workers decided a whole round, 1 300 or
   3 300 req/s), the two taking turns slice by slice, order reversed every slice (one
   after the other for 5 s each, a slow spell fell on one and not the other: ping rounds
   of 1 462 and 3 900 req/s in one run): req/s, the servers' CPU per request, and the
   median of same-round ratios (goal >= 0.8x). Loaded at the same time the two do not
   share the CPU by their cost (wuxing's reads wait on Redis, ping's never do), so that
   mode would measure the scheduler, not the cache;
2. ``instance_update_item`` with revision CAS on MariaDB from 8 clients, each on its own
   instance (no lost CAS): writes/s, p50, p99;
3. watch: a long-polling watcher and a writer; latency from the write's answer to the
   watcher holding the change: p50, p99 (goal p99 <= 50 ms).

Each of ``--rounds`` rounds (default 3) runs all three; bench/harness.py's Report prints
min / median / max, the load before and after, the targets' verdicts from the medians, and
writes var/bench/wuxing.json. About 90 s by default on a loaded 2-core machine.
``WUXING_CACHE_LEASE=0`` in the environment measures the reads without the cache's version
lease (a Redis GET per hit).

    make bench            # or: .venv/bin/python bench/wuxing.py --rounds 3 --seconds 5
    .venv/bin/python bench/wuxing.py --only cas   # the CAS writes alone (no wrk needed)
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests
from harness import Report
from http_overhead import THREADS, WORKERS, combine, load, wrk_run

from butterfly_common.testing import (
    RedisServer,
    child_pids,
    free_port,
    mariadb_database,
    wait_until,
)

BIN = Path(sys.executable).parent
TOKEN = secrets.token_hex(16)  # a fresh write token for the services of this run
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def serve(service: str, workdir: Path, redis_url: str, db_url: str,
          threads: int = THREADS) -> tuple[subprocess.Popen, int]:
    port = free_port()
    env = {**os.environ, "BUTTERFLY_PORT": str(port), "BUTTERFLY_HOST": "127.0.0.1",
           "BUTTERFLY_WORKERS": str(WORKERS), "BUTTERFLY_THREADS": str(threads),
           "BUTTERFLY_LOG_DIR": str(workdir / service / "log"),
           "BUTTERFLY_DATA_DIR": str(workdir / service), "BUTTERFLY_REDIS_URL": redis_url,
           "BUTTERFLY_DB_URL": db_url, "BUTTERFLY_ADMIN_TOKEN": TOKEN}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    proc = subprocess.Popen([str(BIN / "butterfly"), "serve", service], env=env, cwd=workdir,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_until(lambda: requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).ok, 60,
               what=f"{service} up")
    return proc, port


def call(base: str, handler: str, **params) -> dict:
    body = requests.post(f"{base}/wuxing/{handler}", json=params, headers=AUTH,
                         timeout=30).json()
    if body["stat"] != "OK":
        raise RuntimeError(f"{handler}: {body}")
    return body


def prepare(base: str, instances: int) -> None:
    key = {"namespace": "bench", "section_name": "host", "section_version": "v1"}
    call(base, "section_create", **key)
    for name, default in (("i|port", 80), ("s|owner", "ops"), ("f|load", 0.5),
                          ("b|online", True), ("t|notes", "")):
        call(base, "section_item_add", **key, item_name=name, item_default=default)
    call(base, "section_enable", **key)
    for n in range(instances):
        call(base, "instance_create", namespace="bench", instance_name=f"i{n}",
             section_name="host", section_version="v1")


def cpu_seconds(pid: int) -> float:
    """User + system CPU so far of a gunicorn master and its workers (from /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for one in [pid, *child_pids(pid)]:
        try:
            fields = Path(f"/proc/{one}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def cas_writes(base: str, clients: int, seconds: float) -> dict[str, float]:
    latencies: list[float] = []
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def client(n: int) -> None:
        session = requests.Session()
        session.headers.update(AUTH)
        detail = call(base, "instance_get", namespace="bench", instance_name=f"i{n}",
                      value_format="detail")["data"]["i|port"]
        value, revision = detail["item_value"], detail["revision"]
        mine = []
        while time.monotonic() < deadline:
            started = time.perf_counter()
            body = session.post(f"{base}/wuxing/instance_update_item", json={
                "namespace": "bench", "instance_name": f"i{n}", "item_name": "i|port",
                "item_value": value + 1, "revision": revision}, timeout=30).json()
            mine.append(time.perf_counter() - started)
            if body["stat"] != "OK":
                raise RuntimeError(body)
            value, revision = value + 1, body["data"]["revision"]
        with lock:
            latencies.extend(mine)

    started = time.monotonic()
    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.monotonic() - started
    q = statistics.quantiles(latencies, n=100)
    return {"rps": len(latencies) / took, "p50": q[49] * 1000, "p99": q[98] * 1000,
            "n": len(latencies)}


def watch_latency(base: str, writes: int) -> dict[str, float]:
    answered: dict[int, float] = {}
    seen: dict[int, float] = {}
    since = call(base, "namespace_get", namespace="bench")["data"]["revision"]
    done = threading.Event()

    def watcher() -> None:
        last = since
        session = requests.Session()
        while len(seen) < writes and not done.is_set():
            data = session.get(f"{base}/wuxing/watch", params={
                "namespace": "bench", "since": last, "timeout": 5}, timeout=15).json()["data"]
            now = time.perf_counter()
            for change in data["changes"]:
                if change["item_name"] == "i|port" and change["instance_name"] == "i0":
                    seen.setdefault(change["item_value"], now)
            last = data["revision"]

    thread = threading.Thread(target=watcher)
    thread.start()
    time.sleep(0.3)
    session = requests.Session()
    session.headers.update(AUTH)
    value = call(base, "instance_get", namespace="bench", instance_name="i0")["data"]["i|port"]
    for _ in range(writes):
        value += 1
        session.post(f"{base}/wuxing/instance_update_item", json={
            "namespace": "bench", "instance_name": "i0", "item_name": "i|port",
            "item_value": value}, timeout=30).json()
        answered[value] = time.perf_counter()
        time.sleep(0.02)
    wait_until(lambda: len(seen) >= writes, 30, what="watcher saw every write")
    done.set()
    thread.join(20)
    lags = [max(0.0, seen[v] - answered[v]) * 1000 for v in answered]
    q = statistics.quantiles(lags, n=100)
    return {"p50": q[49], "p99": q[98], "n": len(lags)}


def reads_in_turns(urls: dict[str, str], pids: dict[str, int],
                   args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """One read round: each URL loaded in ``args.slices`` wrk slices (fresh connections
    each), the two taking turns, order reversed every slice (ABBA), so a slow spell of a
    few seconds falls on both alike. Per URL: req/s over its own slices, the median of
    the slices' p50 and p99, requests, errors and the server's CPU seconds."""
    slice_seconds = max(1, round(args.seconds / args.slices))
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in urls}
    names = list(urls)
    for turn in range(args.slices):
        for name in names if turn % 2 == 0 else names[::-1]:
            cpu0 = cpu_seconds(pids[name])
            row = wrk_run(urls[name], slice_seconds, args.connections)
            row["cpu"] = cpu_seconds(pids[name]) - cpu0
            runs[name].append(row)
    return {name: {**combine(rows), "cpu": sum(r["cpu"] for r in rows)}
            for name, rows in runs.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds; the median is kept")
    parser.add_argument("--seconds", type=int, default=5, help="per read round and peer")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--slices", type=int, default=5,
                        help="wrk runs per read round, each with fresh connections (5): "
                             "keep-alive connections stay with the worker that took them")
    parser.add_argument("--write-seconds", type=float, default=2.5, help="CAS, per round")
    parser.add_argument("--watch-writes", type=int, default=100, help="per round")
    parser.add_argument("--only", choices=("reads", "cas", "watch"), action="append",
                        help="run only these parts (repeatable; default: all three)")
    args = parser.parse_args()
    parts = set(args.only or ("reads", "cas", "watch"))
    if "reads" in parts and not shutil.which("wrk"):
        print("wrk is needed: apt-get install wrk (make bench does)", file=sys.stderr)
        return 2
    report = Report("wuxing", f"wuxing: cached reads vs core ping (gunicorn gthread "
                              f"{WORKERS}x{THREADS}, wrk -c{args.connections}), CAS writes on "
                              "MariaDB, watch latency")
    read, ping = "wuxing instance_get cached", "core /demo_api/ping"
    cas, watch = "CAS update_item x8", "watch write->watcher"
    with tempfile.TemporaryDirectory() as tmp, RedisServer() as redis_server, \
            mariadb_database("bench_wx") as db_url:
        workdir = Path(tmp)
        procs = []
        try:
            wx, wx_port = serve("wuxing", workdir, redis_server.url, db_url)
            procs.append(wx)
            core, core_port = serve("core", workdir, redis_server.url,
                                    f"sqlite:///{workdir / 'core.db'}")
            procs.append(core)
            base = f"http://127.0.0.1:{wx_port}"
            prepare(base, 8)
            urls = {read: f"{base}/wuxing/instance_get?namespace=bench&instance_name=i0",
                    ping: f"http://127.0.0.1:{core_port}/demo_api/ping"}
            pids = {read: wx.pid, ping: core.pid}
            for _ in range(args.rounds):
                if "reads" in parts:
                    for url in urls.values():
                        load(url, 1, args.connections)  # warm up (fills the cache)
                    rows = reads_in_turns(urls, pids, args)
                    for name, row in rows.items():
                        report.add(name, "cpu ms/req",
                                   1000 * row["cpu"] / max(1.0, row["requests"]))
                        report.add(name, "req/s", row["rps"])
                        report.add(name, "p50 ms", row["p50"])
                        report.add(name, "p99 ms", row["p99"])
                        report.add(name, "non-2xx", row["errors"])
                if "cas" in parts:
                    cpu0 = cpu_seconds(wx.pid)
                    writes = cas_writes(base, 8, args.write_seconds)
                    report.add(cas, "writes/s", writes["rps"])
                    report.add(cas, "p50 ms", writes["p50"])
                    report.add(cas, "p99 ms", writes["p99"])
                    report.add(cas, "cpu ms/write",
                               1000 * (cpu_seconds(wx.pid) - cpu0) / max(1.0, writes["n"]))
                if "watch" in parts:
                    lag = watch_latency(base, args.watch_writes)
                    report.add(watch, "p50 ms", lag["p50"])
                    report.add(watch, "p99 ms", lag["p99"])
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait(30)
    lease = os.environ.get("WUXING_CACHE_LEASE", "") or "0.01 (default)"
    if "reads" in parts:
        report.note(read, f"?namespace=bench&instance_name=i0, WUXING_CACHE_LEASE={lease}; "
                          "cpu ms/req: the server's master + workers (steadier than req/s "
                          "on a loaded machine)")
    if "cas" in parts:
        report.note(cas, "instance_update_item with revision CAS, 8 clients, one instance "
                         "each; cpu ms/write: the server's master + workers")
    if "watch" in parts:
        report.note(watch, f"{args.watch_writes} writes 20 ms apart per round, one "
                           "long-polling watcher")
    if "reads" in parts:
        report.target("cached instance_get / core ping req/s (paired)",
                      report.paired_ratio(read, ping, "req/s"),
                      ">=", 0.8)
    if "watch" in parts:
        report.target("watch p99 ms", report.median(watch, "p99 ms"), "<=", 50)
    return report.finish()


if __name__ == "__main__":
    sys.exit(main())
