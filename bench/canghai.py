"""Console read cost: canghai's queue list and message page versus rq-dashboard's JSON.

Both get a fresh redis-server in the same run: canghai ``--topics`` topics holding
``--messages`` queued messages in all plus one topic of ``--big`` messages; rq-dashboard the
same numbers of RQ queues and jobs. Each endpoint is called through its Flask app in this
process (server time only, no HTTP client in the way), ``--repeat`` times a round; each
of ``--rounds`` rounds (default 3) gives a median and p90 in ms, and bench/harness.py's
Report prints min / median / max of those, the load, the verdicts (from the medians) and
writes var/bench/canghai.json. Targets (issue 11): canghai's queues page <= 300 ms at
1 000 topics / 100 000 messages, and a messages page costing the same whatever the topic's
size (a page of the big topic at most 2x one of a 100-message topic). Filling takes
minutes, so the first run keeps a snapshot of each data set under var/bench/data and later
runs load it (``--refill`` fills afresh); with the snapshots a run takes about 75 s on a
loaded 2-core machine (the first one about 3 minutes).

    .venv/bin/python bench/canghai.py [--rounds 3 --topics 1000 --messages 100000 --big 100000]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from harness import Report
from redis.exceptions import BusyLoadingError

from butterfly_common.mq import Broker
from butterfly_common.redis_client import make_redis
from butterfly_common.testing import RedisServer, wait_until

DATA = Path(__file__).resolve().parent.parent / "var" / "bench" / "data"
SECRET = "bench-secret-key-0123456789abcdef0123456789"  # noqa: S105 - a throw-away bench key
TOKEN = "bench-admin-token-0123456789"  # noqa: S105


def _fingerprint(kind: str) -> str:
    """What the filled data depends on: the queue's Lua and key layout, or RQ's version."""
    digest = hashlib.sha256()
    if kind == "rq":
        import rq
        digest.update(rq.__version__.encode())
    else:
        from butterfly_common import mq
        for path in sorted(Path(mq.__file__).parent.glob("*")):
            if path.suffix in (".lua", ".py"):
                digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def _loaded(client: Any) -> bool:
    try:
        return int(client.info("persistence")["loading"]) == 0
    except BusyLoadingError:
        return False


@contextlib.contextmanager
def filled(kind: str, fill: Callable[[str, int, int, int], None], sizes: tuple[int, int, int],
           refill: bool) -> Iterator[str]:
    """A redis-server holding ``kind``'s data set. Filling 200 000 messages takes a while,
    so the first run saves a snapshot under var/bench/data (named by the sizes and by what
    the data depends on) and later runs load it in seconds."""
    DATA.mkdir(parents=True, exist_ok=True)
    name = f"{kind}-{'-'.join(map(str, sizes))}-{_fingerprint(kind)}.rdb"
    if refill:
        (DATA / name).unlink(missing_ok=True)
    fresh = not (DATA / name).exists()
    with RedisServer(None, "--dir", str(DATA), "--dbfilename", name) as server:
        client = make_redis(server.url, socket_timeout=300)
        wait_until(lambda: _loaded(client), 300, what=f"{kind} snapshot loaded")
        if fresh:
            started = time.perf_counter()
            fill(server.url, *sizes)
            client.save()  # blocks Redis for seconds: hence the long timeout
            print(f"{kind}: filled in {time.perf_counter() - started:.1f}s (snapshot "
                  f"var/bench/data/{name})", flush=True)
        yield server.url


def timed(call: Callable[[], object], repeat: int) -> tuple[float, float]:
    call()  # warm: scripts loaded, connections open
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.9) - 1]


#: Processes that fill a data set: one GIL-bound client cannot keep a redis-server busy.
FILL_PROCESSES = 4


def _publish_range(url: str, topic: str, start: int, stop: int) -> None:
    broker = Broker(make_redis(url))
    for j in range(start, stop):
        broker.publish(topic, {"j": j}, force=True)


def _fill_topics(fill_range: Callable[[str, str, int, int], None], url: str,
                 names: str, first: int, last: int, per: int) -> None:
    for i in range(first, last):
        fill_range(url, names.format(i), 0, per)


def fill_in_processes(fill_range: Callable[[str, str, int, int], None], url: str,
                      names: str, big_name: str, topics: int, messages: int,
                      big: int) -> None:
    """``topics`` queues named ``names.format(i)`` with ``messages / topics`` each, and
    one of ``big``, filled by ``fill_range(url, queue, start, stop)`` in FILL_PROCESSES
    processes."""
    per = max(1, messages // topics)
    step = -(-topics // FILL_PROCESSES)
    chunk = -(-big // FILL_PROCESSES)
    with ProcessPoolExecutor(FILL_PROCESSES) as pool:
        jobs = [pool.submit(_fill_topics, fill_range, url, names, i, min(topics, i + step),
                            per) for i in range(0, topics, step)]
        jobs += [pool.submit(fill_range, url, big_name, j, min(big, j + chunk))
                 for j in range(0, big, chunk)]
        for job in jobs:
            job.result()


def fill_baichuan(url: str, topics: int, messages: int, big: int) -> None:
    fill_in_processes(_publish_range, url, "/bench/t{:04d}", "/bench/big", topics, messages,
                      big)


def canghai_calls(url: str, tmp: Path) -> dict[str, Callable[[], object]]:
    from butterfly_canghai import service
    from butterfly_common.app import create_app
    from butterfly_common.serve import prepare
    from butterfly_common.settings import load_settings

    settings = load_settings({"BUTTERFLY_REDIS_URL": url, "BUTTERFLY_DATA_DIR": str(tmp),
                              "BUTTERFLY_LOG_DIR": str(tmp / "log"),
                              "BUTTERFLY_ADMIN_TOKEN": TOKEN, "BUTTERFLY_SECRET_KEY": SECRET,
                              "CANGHAI_FLEET_FILE": str(tmp / "none.toml")})
    prepare(service, settings)
    client = create_app(service, settings).test_client()
    auth = {"Authorization": f"Bearer {TOKEN}"}

    def get(path: str) -> Callable[[], object]:
        def call() -> object:
            reply = client.get(path, headers=auth)
            assert reply.status_code == 200, (path, reply.status_code)
            return reply
        return call

    return {
        "queues": get("/canghai/queue_list"),
        "page small topic": get(
            "/canghai/msg_list?queue_name=/bench/t0000&page_size=20"),
        "page big topic": get("/canghai/msg_list?queue_name=/bench/big&page_size=20"),
    }


def _rq_enqueue(url: str, name: str, start: int, stop: int) -> None:
    from redis import Redis
    from rq import Queue

    conn = Redis.from_url(url)
    queue = Queue(name, connection=conn)
    for first in range(start, stop, 1000):
        batch = [Queue.prepare_data("os.getpid", args=(j,))
                 for j in range(first, min(stop, first + 1000))]
        with conn.pipeline() as pipe:
            queue.enqueue_many(batch, pipeline=pipe)
            pipe.execute()


def fill_rq(url: str, topics: int, messages: int, big: int) -> None:
    fill_in_processes(_rq_enqueue, url, "t{:04d}", "big", topics, messages, big)


def rq_dashboard_calls(url: str) -> dict[str, Callable[[], object]]:
    from flask import Flask
    from rq_dashboard import web

    app = Flask("rq_dashboard_bench")
    app.config["RQ_DASHBOARD_REDIS_URL"] = url
    app.register_blueprint(web.blueprint)
    with app.app_context():
        web.setup_rq_connection(app)
    client = app.test_client()

    def get(path: str) -> Callable[[], object]:
        def call() -> object:
            reply = client.get(path)
            assert reply.status_code == 200, (path, reply.status_code)
            return reply
        return call

    return {
        "queues": get("/0/data/queues.json"),
        "page small topic": get("/0/data/jobs/t0000/queued/20/asc/1.json"),
        "page big topic": get("/0/data/jobs/big/queued/20/asc/1.json"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds; the median is kept")
    parser.add_argument("--topics", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--big", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=15, help="calls per endpoint and round")
    parser.add_argument("--refill", action="store_true",
                        help="fill both Redis afresh (ignore the snapshots in var/bench/data)")
    args = parser.parse_args()
    report = Report("canghai", f"canghai vs rq-dashboard: {args.topics} topics / queues, "
                               f"{args.messages} messages, a big topic of {args.big} (server "
                               f"time in-process; median / p90 ms of {args.repeat} calls a "
                               "round)")
    calls: dict[str, dict[str, Callable[[], object]]] = {}
    sizes = (args.topics, args.messages, args.big)
    with tempfile.TemporaryDirectory() as tmp, \
            filled("canghai", fill_baichuan, sizes, args.refill) as canghai_url, \
            filled("rq", fill_rq, sizes, args.refill) as rq_url:
        calls["canghai"] = canghai_calls(canghai_url, Path(tmp))
        calls["rq-dash"] = rq_dashboard_calls(rq_url)
        for _ in range(args.rounds):
            for system, endpoints in calls.items():
                for name, call in endpoints.items():
                    median, p90 = timed(call, args.repeat)
                    report.add(f"{system} {name}", "median ms", median)
                    report.add(f"{system} {name}", "p90 ms", p90)
    queues, small, big = "queues", "page small topic", "page big topic"
    for name in (queues, small, big):
        ratio = report.ratio(f"rq-dash {name}", f"canghai {name}", "median ms")
        report.note(f"canghai {name}", f"rq-dashboard / canghai median: {ratio:.1f}x")
    report.target("canghai queues page median ms", report.median(f"canghai {queues}",
                                                                 "median ms"), "<=", 300)
    # "the same whatever the topic's size": a page of the 100 000-message topic costs at most
    # twice one of a 100-message topic
    report.target("canghai page big / small topic", report.ratio(
        f"canghai {big}", f"canghai {small}", "median ms"), "<=", 2.0)
    return report.finish()


if __name__ == "__main__":
    raise SystemExit(main())
