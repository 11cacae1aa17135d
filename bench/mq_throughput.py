"""Queue throughput: baichuan (direct and through Twemproxy) versus RQ and Dramatiq.

Every system gets its own fresh redis-server(s) in each round, on the same machine, and the
same no-op job (bench/mq_noop_app). For each system the benchmark

1. publishes all messages one by one from this process, before any worker runs (publish
   rate: one client, one message at a time, as an application would), then
2. starts ONE worker process and times it from ``Popen`` until the last message is done
   (processing rate: start-up included, nothing subtracted).

baichuan (direct and through Twemproxy) and Dramatiq publish in turns within a round:
``--publish-turns`` slices of the messages, each system's slice timed on its own, the
order turned around every slice (ABBA). A publish rate moves with this kind of VM's slow
spells of a few seconds; published one system after the other, a spell fell on one
system's publish and not on the other's, and the paired ratio of a round came out 0.92
or 1.11 for the same code. In turns, each spell falls on every system alike.

Workers are configured as they would run in production: baichuan's ``butterfly worker`` with
8 consumer threads and its access log written to files; ``rq worker --burst`` (SimpleWorker
in-process, Worker forking a work horse per job) with its default per-job log lines
(captured to a file); ``dramatiq --processes 1 --threads 8``, which logs nothing per job.
No job counts itself: "done" is read from each system's own bookkeeping (baichuan
``counts()["finished"]``, RQ's finished registry and burst exit, Dramatiq's message hash
emptied by acks), so nobody pays for an extra Redis write.

RQ is far slower per job, so it runs fewer messages (``--rq-messages``,
``--rq-fork-messages``) to keep the whole run within a few minutes; rates are per second, so
they compare. RQ cannot run through Twemproxy (enqueue needs MULTI and INFO, the worker
CLIENT SETNAME, completion WATCH and streams: reference/twemproxy.md), so it runs direct
only; Dramatiq runs direct too (its one Lua script composes key names inside the script,
which a proxy cannot route). Targets (issue 13): baichuan direct >= 1.3x Dramatiq
processing and >= 1.0x publishing, >= 5x RQ SimpleWorker; via Twemproxy >= 0.85x direct.
``limited`` (issue 24) is baichuan direct with the messages on priorities 0-2 and topic
limits set that never bind (max_running 1000, 1 000 000 a second): >= 2.5x Dramatiq.

Rounds interleave the systems (a burst of load elsewhere hits one round of each); RQ, ten
times slower, runs in the first round only, which is enough for its ratio's margin.

    make bench            # or: .venv/bin/python bench/mq_throughput.py --rounds 5
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from harness import Report

from butterfly_common.testing import Nutcracker, RedisServer

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
TOPIC = "/bench/noop"
SERVICE_SPEC = "mq_noop_app:service"
POLL = 0.05  # seconds between "how many are done?" probes while a worker runs

# the bench process itself imports the job modules (to publish), like the workers do
sys.path.insert(0, str(HERE))


@dataclass
class Result:
    """One system's numbers: publish and end-to-end processing, both in messages/s."""

    system: str
    messages: int
    publish_rate: float
    process_seconds: float
    first_done: float  # seconds from worker start to the first completed message
    note: str = ""

    @property
    def process_rate(self) -> float:
        return self.messages / self.process_seconds


def worker_env(**extra: str) -> dict[str, str]:
    """The environment of a worker process: bench/ importable, nothing inherited that would
    point a worker at another Redis or a shared metrics directory."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("BUTTERFLY_") and k != "PROMETHEUS_MULTIPROC_DIR"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))
    env.update(extra)
    return env


@contextlib.contextmanager
def worker(argv: list[str], env: dict[str, str], logfile: Path) -> Iterator[subprocess.Popen]:
    """Run ``argv`` with its output in ``logfile``; SIGTERM it (then SIGKILL) on the way out,
    so no worker outlives the benchmark even when a measurement fails."""
    with logfile.open("wb") as out:
        # argv lists built here from fixed parts, never a shell string
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(10)


def timed_publish(n: int, publish_one: Callable[[], object]) -> float:
    """Publish ``n`` messages one by one; returns messages/s."""
    t0 = time.perf_counter()
    for _ in range(n):
        publish_one()
    return n / (time.perf_counter() - t0)


def watch(proc: subprocess.Popen, n: int, done: Callable[[], int], timeout: float,
          logfile: Path, until_exit: bool = False) -> tuple[float, float]:
    """Poll ``done()`` every POLL s until it reaches ``n`` (or, with ``until_exit``, until
    the burst worker exits having done ``n``). Returns (seconds to the end, seconds to the
    first completion), both from ``proc``'s start as seen by the caller's clock."""
    t0 = time.perf_counter()
    first = float("nan")
    deadline = t0 + timeout
    while True:
        count = done()
        now = time.perf_counter()
        if count and math.isnan(first):
            first = now - t0
        exited = proc.poll() is not None
        if until_exit and exited:
            count = done()
            if count != n:
                raise RuntimeError(f"worker exited after {count}/{n} messages; see {tail(logfile)}")
            return now - t0, first
        if not until_exit and count >= n:
            return now - t0, first
        if exited:
            raise RuntimeError(f"worker died (rc {proc.returncode}) after {count}/{n}: "
                               f"{tail(logfile)}")
        if now > deadline:
            raise TimeoutError(f"only {count}/{n} done after {timeout:g}s; {tail(logfile)}")
        time.sleep(POLL)


def tail(logfile: Path, lines: int = 15) -> str:
    """The end of a worker's output, to say why it failed."""
    try:
        return "\n".join(logfile.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# -- the systems ---------------------------------------------------------------------------

def baichuan_publisher(url: str, priorities: bool = False) -> Callable[[], object]:
    """baichuan's publish: Broker.publish with force (no consumer is alive yet); with
    ``priorities``, the messages take priorities 0, 1 and 2 in turn."""
    from butterfly_common.mq import Broker

    broker = Broker.from_url(url)
    if not priorities:
        return lambda: broker.publish(TOPIC, {}, force=True)
    turn = itertools.cycle((0, 1, 2))
    return lambda: broker.publish(TOPIC, {}, force=True, priority=next(turn))


def bench_baichuan(system: str, url: str, n: int, threads: int, tmp: Path,
                   timeout: float, publish_rate: float) -> Result:
    """baichuan, its ``n`` messages published: one ``butterfly worker`` with ``threads``
    consumer threads and file access logging."""
    from butterfly_common.mq import Broker

    broker = Broker.from_url(url)
    queued = broker.counts(TOPIC)["queued"]
    if queued != n:
        raise RuntimeError(f"{system}: {queued} queued after publishing {n}")
    workdir = tmp / system.replace(" ", "_")
    # the bench app also has /bench/item (xingqiao's map bench): a consumer of both
    # would claim on the empty one every round too, a round trip the peers do not make
    env = worker_env(BUTTERFLY_REDIS_URL=url, BUTTERFLY_CONSUME_THREADS=str(threads),
                     BUTTERFLY_CONSUME_TOPICS=TOPIC,
                     BUTTERFLY_LOG_DIR=str(workdir / "log"),
                     BUTTERFLY_DATA_DIR=str(workdir / "data"))
    workdir.mkdir(parents=True)
    logfile = workdir / "worker.out"
    argv = [str(BIN / "butterfly"), "worker", SERVICE_SPEC]
    with worker(argv, env, logfile) as proc:
        seconds, first = watch(proc, n, lambda: broker.counts(TOPIC)["finished"], timeout,
                               logfile)
    counts = broker.counts(TOPIC)
    if counts["failed"] or counts["finished"] != n:
        raise RuntimeError(f"{system}: ended with {counts}")
    # the access log is part of the production cost: check every message wrote its line
    lines = sum(text.count("\tQUEUE\t") for f in (workdir / "log").rglob("acc.log*")
                for text in [f.read_text(errors="replace")])
    note = f"{threads} threads, {lines} access-log lines"
    return Result(system, n, publish_rate, seconds, first, note)


def bench_rq(system: str, worker_class: str, url: str, n: int, tmp: Path,
             timeout: float) -> Result:
    """RQ: Queue.enqueue one by one, then ``rq worker --burst`` timed from start to exit."""
    from mq_noop_app.rq_jobs import noop
    from redis import Redis
    from rq import Queue
    from rq.registry import FailedJobRegistry, FinishedJobRegistry

    conn = Redis.from_url(url)
    queue = Queue("default", connection=conn)
    publish_rate = timed_publish(n, lambda: queue.enqueue(noop))
    finished = FinishedJobRegistry(queue=queue)
    logfile = tmp / f"{system.replace(' ', '_')}.out"
    argv = [str(BIN / "rq"), "worker", "--burst", "--url", url, "--worker-class", worker_class,
            "default"]
    with worker(argv, worker_env(), logfile) as proc:
        seconds, first = watch(proc, n, lambda: finished.count, timeout, logfile,
                               until_exit=True)
    failed = FailedJobRegistry(queue=queue).count
    if failed:
        raise RuntimeError(f"{system}: {failed} jobs failed; {tail(logfile)}")
    conn.close()
    return Result(system, n, publish_rate, seconds, first, "1 process, burst")


def dramatiq_publisher(url: str) -> Callable[[], object]:
    """Dramatiq's publish: actor.send, the actor bound to this round's server."""
    os.environ["BENCH_REDIS_URL"] = url  # read when the actor module builds its broker
    from mq_noop_app.dramatiq_actors import noop, use_broker

    use_broker(url)  # a later round's import is cached: rebind to this round's server
    return noop.send


def bench_dramatiq(url: str, n: int, threads: int, tmp: Path, timeout: float,
                   publish_rate: float) -> Result:
    """Dramatiq, its ``n`` messages sent: ``dramatiq --processes 1 --threads N``, done
    when acks have emptied the queue's message hash."""
    from mq_noop_app.dramatiq_actors import QUEUE
    from redis import Redis

    conn = Redis.from_url(url)
    msgs, dead = f"dramatiq:{QUEUE}.msgs", f"dramatiq:{QUEUE}.XQ.msgs"
    if conn.hlen(msgs) != n:
        raise RuntimeError(f"dramatiq: {conn.hlen(msgs)} stored after sending {n}")
    logfile = tmp / "dramatiq.out"
    argv = [str(BIN / "dramatiq"), "--processes", "1", "--threads", str(threads),
            "mq_noop_app.dramatiq_actors"]
    with worker(argv, worker_env(BENCH_REDIS_URL=url), logfile) as proc:
        seconds, first = watch(proc, n, lambda: n - conn.hlen(msgs), timeout, logfile)
    if conn.hlen(dead):
        raise RuntimeError(f"dramatiq: {conn.hlen(dead)} dead-lettered; {tail(logfile)}")
    conn.close()
    return Result("Dramatiq", n, publish_rate, seconds, first, f"1 process x {threads} threads")


# -- running and reporting -----------------------------------------------------------------

SYSTEMS = ("direct", "twemproxy", "limited", "rq-simple", "rq-fork", "dramatiq")
#: The systems that publish in turns (the rest publish and run on their own).
IN_TURNS = ("direct", "twemproxy", "limited", "dramatiq")
LABELS = {"direct": "baichuan direct", "twemproxy": "baichuan twemproxy",
          "limited": "baichuan prio+limits"}
#: ``limited``'s topic limits: set, checked on every claim, never binding (issue 24)
LIMITS = {"max_running": 1000, "rate": 1_000_000, "rate_window": 1.0}


def start_servers(name: str, stack: contextlib.ExitStack) -> str:
    """Fresh redis-server(s) for ``name`` (two shards behind nutcracker for Twemproxy),
    stopped and removed when ``stack`` closes; returns the URL the system uses."""
    if name == "twemproxy":
        shards = [stack.enter_context(RedisServer()) for _ in range(2)]
        return stack.enter_context(Nutcracker([s.port for s in shards])).url
    url = stack.enter_context(RedisServer()).url
    if name == "limited":
        from butterfly_common.mq import Broker

        Broker.from_url(url).set_limits(TOPIC, set_by="bench", **LIMITS)
    return url


def publish_in_turns(names: list[str], urls: dict[str, str], n: int,
                     turns: int) -> dict[str, float]:
    """Publish ``n`` messages per system in ``turns`` slices, the systems taking turns
    (order reversed every slice); returns each system's messages/s over its own slices."""
    publishers = {name: (dramatiq_publisher(urls[name]) if name == "dramatiq"
                         else baichuan_publisher(urls[name], priorities=name == "limited"))
                  for name in names}
    spent = dict.fromkeys(names, 0.0)
    sizes = [n // turns + (1 if i < n % turns else 0) for i in range(turns)]
    for turn, size in enumerate(sizes):
        for name in names if turn % 2 == 0 else names[::-1]:
            spent[name] += size / timed_publish(size, publishers[name])
    return {name: n / spent[name] for name in names}


def run_round(order: list[str], args: argparse.Namespace, tmp: Path, first: bool,
              done: Callable[[Result], None]) -> None:
    """One round: the IN_TURNS systems publish in turns, then each system's worker runs
    alone, in ``order``; RQ (first round only) publishes and runs on its own."""
    with contextlib.ExitStack() as stack:
        paired = [name for name in order if name in IN_TURNS]
        urls = {name: start_servers(name, stack) for name in paired}
        rates = publish_in_turns(paired, urls, args.messages, args.publish_turns)
        for name in order:
            if name.startswith("rq") and not first:
                continue
            print(f"{name}...", end=" ", file=sys.stderr, flush=True)
            if name == "dramatiq":
                r = bench_dramatiq(urls[name], args.messages, args.threads, tmp,
                                   args.timeout, rates[name])
            elif name in IN_TURNS:
                r = bench_baichuan(LABELS[name], urls[name], args.messages, args.threads,
                                   tmp, args.timeout, rates[name])
            else:
                r = run_rq(name, args, tmp)
            done(r)


def run_rq(name: str, args: argparse.Namespace, tmp: Path) -> Result:
    """RQ on its own fresh server, stopped and removed afterwards."""
    with contextlib.ExitStack() as stack:
        url = start_servers(name, stack)
        if name == "rq-simple":
            return bench_rq("RQ SimpleWorker", "rq.SimpleWorker", url, args.rq_messages, tmp,
                            args.timeout)
        return bench_rq("RQ Worker (fork)", "rq.Worker", url, args.rq_fork_messages, tmp,
                        args.timeout)


def record(report: Report, r: Result) -> None:
    report.add(r.system, "publish/s", r.publish_rate)
    report.add(r.system, "process/s", r.process_rate)
    report.add(r.system, "1st done s", r.first_done)
    report.note(r.system, f"{r.messages} messages, {r.note}")


RATIOS = [("baichuan direct / Dramatiq", "baichuan direct", "Dramatiq", "process/s", 1.3),
          ("baichuan direct / Dramatiq", "baichuan direct", "Dramatiq", "publish/s", 1.0),
          ("baichuan direct / RQ SimpleWorker", "baichuan direct", "RQ SimpleWorker",
           "process/s", 5.0),
          ("baichuan twemproxy / direct", "baichuan twemproxy", "baichuan direct",
           "process/s", 0.85),
          # issue 24: priorities and limits that do not bind keep the queue ahead
          ("baichuan prio+limits / Dramatiq", "baichuan prio+limits", "Dramatiq",
           "process/s", 2.5)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000,
                        help="messages for baichuan and Dramatiq per round (20000: a worker "
                             "drains them in ~5 s, which averages over the VM's slow spells "
                             "of a few seconds; 10000 took ~2 s and a spell decided a round)")
    parser.add_argument("--rq-messages", type=int, default=1_500,
                        help="messages for RQ SimpleWorker (1500: it runs ~300/s)")
    parser.add_argument("--rq-fork-messages", type=int, default=300,
                        help="messages for the forking RQ Worker (300: it runs ~50/s)")
    parser.add_argument("--threads", type=int, default=8, help="consumer threads (8)")
    parser.add_argument("--timeout", type=float, default=300.0,
                        help="give up on one system after this many seconds (300)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds of the systems, interleaved; median kept (3)")
    parser.add_argument("--publish-turns", type=int, default=20,
                        help="slices in which baichuan and Dramatiq publish in turns (20)")
    parser.add_argument("--only", nargs="+", choices=SYSTEMS, default=list(SYSTEMS),
                        help="run only these systems")
    args = parser.parse_args()
    report = Report("mq_throughput",
                    f"no-op messages, one worker process per system, {args.threads} threads "
                    "where the system has threads; publish = one client, one by one")
    with tempfile.TemporaryDirectory(prefix="bf-mqbench-") as tmp:
        for round_no in range(args.rounds):
            round_dir = Path(tmp) / f"round{round_no}"
            round_dir.mkdir()
            order = args.only if round_no % 2 == 0 else args.only[::-1]  # ABBA

            def done(r: Result) -> None:
                record(report, r)
                print(f"publish {r.publish_rate:.0f}/s, process {r.process_rate:.0f}/s",
                      file=sys.stderr, flush=True)

            print(f"round {round_no + 1}:", end=" ", file=sys.stderr, flush=True)
            run_round(order, args, round_dir, round_no == 0, done)
    have = {system for system, _ in report.values}
    for label, a, b, metric, goal in RATIOS:
        if a in have and b in have:
            if a.startswith("RQ") or b.startswith("RQ"):  # one round of RQ: medians
                report.target(f"{label} {metric}", report.ratio(a, b, metric), ">=", goal)
            else:
                report.target(f"{label} {metric} (paired)", report.paired_ratio(a, b, metric),
                              ">=", goal)
    return report.finish()


if __name__ == "__main__":
    sys.exit(main())
