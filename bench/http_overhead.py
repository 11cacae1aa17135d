"""HTTP overhead: butterfly_common's /demo_api/ping versus a bare Flask route.

Both run under gunicorn with identical settings (gthread, same workers/threads/keep-alive).
By default each round loads both AT THE SAME TIME, each with its own wrk process: this kind
of 2-core VM has slow spells of a few seconds (the host's, invisible as load average), and
loading the two one after the other measured the spells (pairs of rounds apart by 0.25x to
4x); loaded together, every spell hits both alike and each gets of the shared CPUs what its
requests cost. ``--no-together`` runs them one after the other (ABBA order). Per round:
requests/s, p50, p99, and the CPU the gunicorn workers spent per request (from /proc).

A round is ``--slices`` wrk runs back to back, each opening its connections afresh: wrk's
keep-alive connections stay with the worker that accepted them, and one split of 16
between two workers (11 and 5, say) left one worker idle half the time - rounds of the
same server came out 1,700 and 4,300 req/s. Fresh splits average that out.
Target: butterfly / bare Flask req/s >= 0.9 (issue 13), every response header
and the access-log line kept.

    make bench            # or: .venv/bin/python bench/http_overhead.py --seconds 8 --rounds 5
    .venv/bin/python bench/http_overhead.py --tracing   # + butterfly with tracing on
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
from harness import Report

from butterfly_common.testing import free_port, wait_until

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
WORKERS, THREADS, KEEPALIVE = 2, 8, 5


def parse_wrk(text: str) -> dict[str, float]:
    def ms(value: str, unit: str) -> float:
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    p50 = re.search(r"^\s+50%\s+([\d.]+)(us|ms|s)", text, re.M)
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)", text, re.M)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    return {"rps": rps, "p50": ms(*p50.groups()), "p99": ms(*p99.groups()),
            "errors": int(errors.group(1)) if errors else 0}


def start(name: str, port: int, workdir: Path) -> subprocess.Popen:
    common = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "cwd": workdir}
    if name.startswith("butterfly"):
        env = {**os.environ, "BUTTERFLY_PORT": str(port), "BUTTERFLY_HOST": "127.0.0.1",
               "BUTTERFLY_WORKERS": str(WORKERS), "BUTTERFLY_THREADS": str(THREADS),
               "BUTTERFLY_LOG_DIR": str(workdir / name / "log"),
               "BUTTERFLY_DATA_DIR": str(workdir / name)}
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        if name == TRACED:  # every request sampled, its spans made and dropped
            env.update({"OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none",
                        "OTEL_TRACES_SAMPLER": "always_on"})
        argv = [str(BIN / "butterfly"), "serve", "core"]
    else:
        env = {**os.environ, "PYTHONPATH": str(HERE)}
        argv = [str(BIN / "gunicorn"), "--bind", f"127.0.0.1:{port}", "--workers", str(WORKERS),
                "--worker-class", "gthread", "--threads", str(THREADS),
                "--keep-alive", str(KEEPALIVE), "bare_flask_app:app"]
    proc = subprocess.Popen(argv, env=env, **common)
    url = f"http://127.0.0.1:{port}/demo_api/ping"
    wait_until(lambda: requests.get(url, timeout=1).ok, 30, what=f"{name} up")
    return proc


PING = "http://127.0.0.1:{}/demo_api/ping"
#: ``--tracing``: butterfly with OpenTelemetry on (issue 26: within 10 % of tracing off)
TRACED = "butterfly traced"


def wrk_run(url: str, seconds: float, connections: int) -> dict[str, float]:
    """One wrk run on ``url`` with fresh connections: its parsed figures, the requests it
    made and the wall seconds it took."""
    t0 = time.monotonic()
    out = subprocess.run(["wrk", "-t", "1", "-c", str(connections), "-d",
                          f"{max(1, round(seconds))}s", "--latency", url],
                         capture_output=True, text=True, check=True).stdout
    run = parse_wrk(out)
    run["requests"] = float(re.search(r"(\d+) requests in", out).group(1))
    run["seconds"] = time.monotonic() - t0
    return run


def combine(runs: list[dict[str, float]]) -> dict[str, float]:
    """Several wrk runs as one: req/s over the whole, the median of their p50 and p99,
    the sums of requests and errors."""
    return {"rps": sum(r["requests"] for r in runs) / sum(r["seconds"] for r in runs),
            "p50": statistics.median(r["p50"] for r in runs),
            "p99": statistics.median(r["p99"] for r in runs),
            "errors": sum(r["errors"] for r in runs),
            "requests": sum(r["requests"] for r in runs)}


def load(url: str, seconds: float, connections: int, slices: int = 1) -> dict[str, float]:
    """``slices`` wrk runs on ``url`` over ``seconds`` in all (each with fresh connections,
    see the module docstring), combined."""
    return combine([wrk_run(url, seconds / slices, connections) for _ in range(slices)])


def workers_cpu(master: subprocess.Popen) -> float:
    """CPU seconds (user + system) of the master's children, the gunicorn workers."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for task in Path(f"/proc/{master.pid}/task").iterdir():
        children = (task / "children").read_text().split()
        for pid in children:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def record(report: Report, name: str, r: dict[str, float], cpu: float) -> None:
    report.add(name, "req/s", r["rps"])
    report.add(name, "p50 ms", r["p50"])
    report.add(name, "p99 ms", r["p99"])
    report.add(name, "CPU us/request", 1e6 * cpu / max(r["requests"], 1))
    report.add(name, "non-2xx", r["errors"])


def measure_together(report: Report, names: tuple[str, ...],
                     procs: dict[str, subprocess.Popen], ports: dict[str, int],
                     args: argparse.Namespace) -> None:
    """One round with both servers loaded at the same time, each by its own wrk: every
    slow spell of the machine hits both alike, and what each gets of the shared CPUs
    follows what a request costs it."""
    cpu = {name: workers_cpu(procs[name]) for name in names}
    with ThreadPoolExecutor(len(names)) as pool:
        results = dict(zip(names, pool.map(
            lambda n: load(PING.format(ports[n]), args.seconds, args.connections,
                           args.slices), names),
            strict=True))
    for name in names:
        record(report, name, results[name], workers_cpu(procs[name]) - cpu[name])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=8, help="per round (8)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (3)")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--slices", type=int, default=4,
                        help="wrk runs per round, each with fresh connections (4)")
    parser.add_argument("--together", action=argparse.BooleanOptionalAction, default=True,
                        help="load both servers at once, each with its own wrk (default), "
                             "or one after the other (--no-together)")
    parser.add_argument("--tracing", action="store_true",
                        help="add a third server: butterfly with tracing on (every span "
                             "made, none exported)")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        print("wrk is needed: apt-get install wrk (make bench does)", file=sys.stderr)
        return 2
    report = Report("http_overhead",
                    f"GET /demo_api/ping, gunicorn gthread {WORKERS}x{THREADS}, "
                    f"wrk -c{args.connections}, {args.seconds} s per round and server")
    names: tuple[str, ...] = ("bare flask", "butterfly", *((TRACED,) if args.tracing else ()))
    with tempfile.TemporaryDirectory() as tmp:
        procs: dict[str, subprocess.Popen] = {}
        ports = {}
        try:
            for name in names:
                ports[name] = free_port()
                procs[name] = start(name, ports[name], Path(tmp))
            for name in names:
                load(PING.format(ports[name]), 1, args.connections)  # warm up
            for round_no in range(args.rounds):
                if args.together:
                    measure_together(report, names, procs, ports, args)
                    continue
                # ABBA: who goes first alternates, so a drift of the machine's speed
                # within a round favours neither
                for name in names if round_no % 2 == 0 else names[::-1]:
                    cpu = workers_cpu(procs[name])
                    r = load(PING.format(ports[name]), args.seconds, args.connections, args.slices)
                    record(report, name, r, workers_cpu(procs[name]) - cpu)
                    time.sleep(0.5)
        finally:
            for proc in procs.values():
                proc.terminate()
                proc.wait(30)
    report.target("butterfly / bare flask req/s (paired)",
                  report.paired_ratio("butterfly", "bare flask", "req/s"), ">=", 0.9)
    report.target("butterfly non-2xx", report.median("butterfly", "non-2xx"), "<=", 0)
    if args.tracing:
        report.target("traced / butterfly req/s (paired)",
                      report.paired_ratio(TRACED, "butterfly", "req/s"), ">=", 0.9)
    return report.finish()


if __name__ == "__main__":
    sys.exit(main())
