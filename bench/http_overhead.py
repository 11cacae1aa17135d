"""HTTP overhead: butterfly_common's /demo_api/ping versus a bare Flask route.

Both run under gunicorn with identical settings (gthread, same workers/threads/keep-alive),
one after the other in the same run, loaded by wrk from a separate process. Prints
requests/s, p50 and p99 for each, and the ratio butterfly / bare Flask (target >= 0.85).

    make bench            # or: .venv/bin/python bench/http_overhead.py --seconds 10
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
from pathlib import Path

import requests

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
    if name == "butterfly":
        env = {**os.environ, "BUTTERFLY_PORT": str(port), "BUTTERFLY_HOST": "127.0.0.1",
               "BUTTERFLY_WORKERS": str(WORKERS), "BUTTERFLY_THREADS": str(THREADS),
               "BUTTERFLY_LOG_DIR": str(workdir / "log"), "BUTTERFLY_DATA_DIR": str(workdir)}
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
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


def load(port: int, seconds: int, connections: int) -> dict[str, float]:
    out = subprocess.run(["wrk", "-t", "1", "-c", str(connections), "-d", f"{seconds}s",
                          "--latency", f"http://127.0.0.1:{port}/demo_api/ping"],
                         capture_output=True, text=True, check=True).stdout
    return parse_wrk(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=8, help="per round and peer")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds; median kept")
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        print("wrk is needed: apt-get install wrk (make bench does)", file=sys.stderr)
        return 2
    results: dict[str, list[dict[str, float]]] = {"bare flask": [], "butterfly": []}
    with tempfile.TemporaryDirectory() as tmp:
        procs = {}
        ports = {}
        try:
            for name in results:
                ports[name] = free_port()
                procs[name] = start(name, ports[name], Path(tmp))
            for _ in range(args.rounds):
                for name in results:
                    load(ports[name], 1, args.connections)  # warm up
                    results[name].append(load(ports[name], args.seconds, args.connections))
                    time.sleep(0.5)
        finally:
            for proc in procs.values():
                proc.terminate()
                proc.wait(30)
    table = {name: {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
             for name, rounds in results.items()}
    print(f"\nGET /demo_api/ping, gunicorn gthread {WORKERS}x{THREADS}, wrk -c{args.connections}, "
          f"{args.rounds} rounds x {args.seconds}s, median")
    print(f"{'server':<12} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'non-2xx':>8}")
    for name, row in table.items():
        print(f"{name:<12} {row['rps']:>10.0f} {row['p50']:>8.2f} {row['p99']:>8.2f} "
              f"{row['errors']:>8.0f}")
    ratio = table["butterfly"]["rps"] / table["bare flask"]["rps"]
    print(f"ratio butterfly / bare flask req/s: {ratio:.2f} (target >= 0.85)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
