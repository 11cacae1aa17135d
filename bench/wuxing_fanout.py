"""wuxing watch fan-out: one write reaching 200 watching clients (issue 27: p99 <= 100 ms).

wuxing (gunicorn gthread, 2 workers with threads enough for every watch: a streamed watch
or a long poll holds a server thread, and a worker may be handed every stream,
docs/services/wuxing.md) on SQLite and its own redis-server. The watchers are
``--watchers`` threads spread over ``--procs`` client processes (one Python process with
200 threads would measure its own GIL), each iterating ``WuxingClient.watch()``: a streamed
watch (``/wuxing/watch?stream=1``, reopened every 10 s from the last revision held), or
with ``--long-poll`` one long poll per change (the path before streams). The
writer first makes one warm-up write and waits until every watcher holds it (so every
watch is in place), then makes ``--writes`` writes ``--gap`` seconds apart. Per write and
watcher: the latency from the write's answer to the watcher holding the change (wall clock,
same machine; a change seen before the writer read its answer counts 0). p50 / p99 / max
over all of them, per round.

    .venv/bin/python bench/wuxing_fanout.py [--watchers 200] [--procs 4] [--writes 20]
        [--gap 0.4] [--rounds 3] [--long-poll]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests
from harness import Report
from wuxing import AUTH, call, cpu_seconds, prepare, serve

from butterfly_common.testing import RedisServer, wait_until
from butterfly_wuxing.client import WuxingClient

NAME = "watch fan-out"


def watcher_process(base: str, since: int, threads: int, values: int, stream: bool) -> None:
    """Client side (``--watcher``): ``threads`` watchers; each prints nothing until it has
    seen ``values`` values of i0's ``i|port``; then one JSON line: per thread, value ->
    wall time it was held. "ready" is printed once every thread holds the first value."""
    seen: list[dict[int, float]] = [{} for _ in range(threads)]
    ready = threading.Barrier(threads + 1)

    def watch(n: int) -> None:
        client = WuxingClient(base, timeout=30)  # one per thread: its own connection
        for change in client.watch("bench", since, poll=10, stream=stream):
            now = time.time()
            if change["item_name"] == "i|port" and change["instance_name"] == "i0":
                first = not seen[n]
                seen[n].setdefault(int(change["item_value"]), now)
                if first:
                    ready.wait(60)
                if len(seen[n]) >= values:
                    return

    pool = [threading.Thread(target=watch, args=(n,), daemon=True) for n in range(threads)]
    for thread in pool:
        thread.start()
    ready.wait(60)
    print("ready", flush=True)
    for thread in pool:
        thread.join(120)
    print(json.dumps([{str(k): v for k, v in s.items()} for s in seen]), flush=True)


def fanout_round(base: str, args: argparse.Namespace, server_pid: int) -> dict[str, float]:
    """One round: warm-up write, every watcher in place, ``args.writes`` timed writes.
    Also the server's CPU per delivery over the timed writes (what the load average does
    not change much: the machine's other work slows a delivery, not its cost)."""
    since = call(base, "namespace_get", namespace="bench")["data"]["revision"]
    value = call(base, "instance_get", namespace="bench", instance_name="i0")["data"]["i|port"]
    per_proc = [args.watchers // args.procs + (1 if i < args.watchers % args.procs else 0)
                for i in range(args.procs)]
    procs = [subprocess.Popen(
        [sys.executable, __file__, "--watcher", base, str(since), str(n),
         str(args.writes + 1), "0" if args.long_poll else "1"],
        stdout=subprocess.PIPE, text=True) for n in per_proc]
    session = requests.Session()
    session.headers.update(AUTH)

    def write(v: int) -> float:
        body = session.post(f"{base}/wuxing/instance_update_item", json={
            "namespace": "bench", "instance_name": "i0", "item_name": "i|port",
            "item_value": v}, timeout=30).json()
        if body["stat"] != "OK":
            raise RuntimeError(f"write: {body}")
        return time.time()

    try:
        time.sleep(0.5)  # the watches are asked for; the warm-up write proves they are in
        value += 1
        write(value)
        for proc in procs:  # each says "ready" once all its watchers hold the warm-up
            line = proc.stdout.readline().strip()
            if line != "ready":
                raise RuntimeError(f"a watcher process said {line!r}")
        answered = {}
        cpu0 = cpu_seconds(server_pid)
        for _ in range(args.writes):
            value += 1
            answered[value] = write(value)
            time.sleep(args.gap)
        cpu = cpu_seconds(server_pid) - cpu0
        lags: list[float] = []
        for proc in procs:
            out, _ = proc.communicate(timeout=120)
            for seen in json.loads(out.strip().splitlines()[-1]):
                lags += [max(0.0, seen[str(v)] - t) * 1000 for v, t in answered.items()
                         if str(v) in seen]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    expected = args.watchers * args.writes
    if len(lags) != expected:
        raise RuntimeError(f"{len(lags)} deliveries of {expected}")
    q = statistics.quantiles(lags, n=100)
    return {"p50": q[49], "p99": q[98], "max": max(lags), "n": len(lags),
            "cpu_us": cpu / expected * 1e6}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--watchers", type=int, default=200)
    parser.add_argument("--procs", type=int, default=4, help="client processes")
    parser.add_argument("--writes", type=int, default=20, help="timed writes per round")
    parser.add_argument("--gap", type=float, default=0.4, help="seconds between writes")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--long-poll", action="store_true",
                        help="watchers long-poll (one request per change) instead of streaming")
    parser.add_argument("--watcher", nargs=5,
                        metavar=("BASE", "SINCE", "THREADS", "VALUES", "STREAM"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.watcher:
        base, since, threads, values, stream = args.watcher
        watcher_process(base, int(since), int(threads), int(values), stream == "1")
        return 0
    how = "long-polling" if args.long_poll else "streaming"
    report = Report("wuxing_fanout", f"wuxing watch: a write to {args.watchers} {how} "
                                     f"clients in {args.procs} processes, {args.writes} "
                                     f"writes {args.gap} s apart a round")
    # a thread per watch and some to spare, in each of the 2 workers: which worker accepts
    # a stream's connection is the kernel's choice, so one may be handed all of them
    threads = args.watchers + 16
    with tempfile.TemporaryDirectory() as tmp, RedisServer() as redis_server:
        workdir = Path(tmp)
        proc, port = serve("wuxing", workdir, redis_server.url,
                           f"sqlite:///{workdir / 'wx.db'}", threads=threads)
        try:
            base = f"http://127.0.0.1:{port}"
            prepare(base, 1)
            wait_until(lambda: call(base, "namespace_get", namespace="bench"), 10,
                       what="namespace")
            for _ in range(args.rounds):
                lag = fanout_round(base, args, proc.pid)
                report.add(NAME, "p50 ms", lag["p50"])
                report.add(NAME, "p99 ms", lag["p99"])
                report.add(NAME, "max ms", lag["max"])
                report.add(NAME, "deliveries", lag["n"])
                report.add(NAME, "server CPU us/delivery", lag["cpu_us"])
        finally:
            proc.terminate()
            proc.wait(30)
    report.note(NAME, f"{how} watchers (WuxingClient.watch); wuxing 2 workers x {threads} "
                      "threads, SQLite; latency from the write's answer to the watcher "
                      "holding it")
    report.target(f"watch fan-out to {args.watchers}: p99 ms (median)",
                  report.median(NAME, "p99 ms"), "<=", 100)
    return report.finish()


if __name__ == "__main__":
    sys.exit(main())
