"""Bulk publish: baichuan's ``publish_many`` (direct and through Twemproxy) beside RQ's
``Queue.enqueue_many`` and Dramatiq's ``group(...).run()``.

Each system gets a fresh redis-server (two shards behind nutcracker for Twemproxy) in every
round and publishes ``--messages`` no-op messages from this one process, in calls of
``--batch`` messages (the list a caller hands over at once), nothing consuming meanwhile.
The rate is messages/s over the whole run, building the messages included. For scale the
table also has baichuan's one-by-one ``publish`` (direct) on the same server kind.

- baichuan ``Broker.publish_many``: every message through the steps of a publish
  (idempotent by id), ``PUBLISH_CHUNK`` (500) per round trip as one script call per topic,
  plus the id index entry of each generated id in the same trip (``force``: no consumer
  runs).
- RQ ``Queue.enqueue_many`` of ``Queue.prepare_data(noop)``: one pipeline per call.
- Dramatiq has no bulk enqueue: ``group(messages).run()`` is its way of sending a list,
  one ``enqueue`` script call per message.

Targets (issue 24): ``publish_many`` >= 50 000 messages/s direct and >= 30 000/s through
Twemproxy on the 2-core machine.

    .venv/bin/python bench/mq_bulk_publish.py --rounds 3
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from harness import Report

from butterfly_common.testing import Nutcracker, RedisServer

HERE = Path(__file__).resolve().parent
TOPIC = "/bench/noop"
sys.path.insert(0, str(HERE))  # the peers' job modules

SYSTEMS = ("many-direct", "many-twemproxy", "one-direct", "rq", "dramatiq")
LABELS = {"many-direct": "baichuan many direct", "many-twemproxy": "baichuan many twemproxy",
          "one-direct": "baichuan one by one", "rq": "RQ enqueue_many",
          "dramatiq": "Dramatiq group.run"}


@contextlib.contextmanager
def servers(system: str) -> Iterator[str]:
    """Fresh redis-server(s) for ``system``; yields the URL it publishes to."""
    with contextlib.ExitStack() as stack:
        if system == "many-twemproxy":
            shards = [stack.enter_context(RedisServer()) for _ in range(2)]
            yield stack.enter_context(Nutcracker([s.port for s in shards])).url
        else:
            yield stack.enter_context(RedisServer()).url


def baichuan_many(url: str) -> Callable[[int], int]:
    from butterfly_common.mq import Broker

    broker = Broker.from_url(url)

    def send(n: int) -> int:
        results = broker.publish_many([{"topic": TOPIC, "data": {}} for _ in range(n)],
                                      force=True)
        return sum(1 for r in results if r.created)
    return send


def baichuan_one(url: str) -> Callable[[int], int]:
    from butterfly_common.mq import Broker

    broker = Broker.from_url(url)

    def send(n: int) -> int:
        return sum(1 for _ in range(n) if broker.publish(TOPIC, {}, force=True).created)
    return send


def rq_many(url: str) -> Callable[[int], int]:
    from mq_noop_app.rq_jobs import noop
    from redis import Redis
    from rq import Queue

    queue = Queue("default", connection=Redis.from_url(url))

    def send(n: int) -> int:
        return len(queue.enqueue_many([Queue.prepare_data(noop) for _ in range(n)]))
    return send


def dramatiq_group(url: str) -> Callable[[int], int]:
    os.environ["BENCH_REDIS_URL"] = url  # read when the actor module builds its broker
    import dramatiq
    from mq_noop_app.dramatiq_actors import noop, use_broker

    use_broker(url)

    def send(n: int) -> int:
        dramatiq.group(noop.message() for _ in range(n)).run()
        return n
    return send


SENDERS: dict[str, Callable[[str], Callable[[int], int]]] = {
    "many-direct": baichuan_many, "many-twemproxy": baichuan_many,
    "one-direct": baichuan_one, "rq": rq_many, "dramatiq": dramatiq_group,
}


def stored(system: str, url: str) -> int:
    """How many messages the system's own bookkeeping holds (checks nothing was lost)."""
    if system.startswith(("many", "one")):
        from butterfly_common.mq import Broker

        return Broker.from_url(url).counts(TOPIC)["queued"]
    from redis import Redis

    conn = Redis.from_url(url)
    try:
        if system == "rq":
            return int(conn.llen("rq:queue:default"))
        return int(conn.hlen("dramatiq:default.msgs"))
    finally:
        conn.close()


def run(system: str, n: int, batch: int) -> float:
    """Publish ``n`` messages in calls of ``batch``; returns messages/s."""
    with servers(system) as url:
        send = SENDERS[system](url)
        send(min(batch, 100))  # connections, scripts loaded: not part of the figure
        warm = stored(system, url)
        t0 = time.perf_counter()
        done = 0
        while done < n:
            done += send(min(batch, n - done))
        rate = n / (time.perf_counter() - t0)
        if stored(system, url) - warm != n:
            raise RuntimeError(f"{system}: {stored(system, url) - warm} stored, {n} sent")
        return rate


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=50_000,
                        help="messages per system per round (50000)")
    parser.add_argument("--one-messages", type=int, default=10_000,
                        help="messages of the one-by-one baichuan publish (10000)")
    parser.add_argument("--batch", type=int, default=1000,
                        help="messages per bulk call (1000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; median kept (3)")
    parser.add_argument("--only", nargs="+", choices=SYSTEMS, default=list(SYSTEMS))
    args = parser.parse_args()
    report = Report("mq_bulk_publish",
                    f"bulk publish of no-op messages from one process, calls of {args.batch}")
    for round_no in range(args.rounds):
        order = args.only if round_no % 2 == 0 else args.only[::-1]
        print(f"round {round_no + 1}:", end=" ", file=sys.stderr, flush=True)
        for system in order:
            n = args.one_messages if system == "one-direct" else args.messages
            rate = run(system, n, args.batch)
            report.add(LABELS[system], "publish/s", rate)
            print(f"{system} {rate:.0f}/s", end="; ", file=sys.stderr, flush=True)
        print(file=sys.stderr)
    have = {system for system, _ in report.values}
    direct, proxy = LABELS["many-direct"], LABELS["many-twemproxy"]
    if direct in have:
        report.target(f"{direct} publish/s", report.median(direct, "publish/s"), ">=", 50_000)
    if proxy in have:
        report.target(f"{proxy} publish/s", report.median(proxy, "publish/s"), ">=", 30_000)
    for peer in (LABELS["rq"], LABELS["dramatiq"]):
        if direct in have and peer in have:
            report.target(f"{direct} / {peer}", report.paired_ratio(direct, peer,
                                                                      "publish/s"), ">=", 1.0)
    return report.finish()


if __name__ == "__main__":
    sys.exit(main())
