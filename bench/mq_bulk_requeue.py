"""Bulk requeue by filter: ``Broker.bulk(topic, "requeue", "failed")`` over 100 000 dead
letters of one topic, on a fresh private redis-server per round.

Set-up (not timed): the messages are published with ``publish_many`` (``force``: nothing
consumes), claimed 1000 at a time and dead-lettered with the broker's own ``fail`` script,
pipelined 1000 per round trip, so each is a real failed record (``error``, ``ended_at``,
``failure_ttl``). Timed: one dry run (the preview a caller asks for first), then the
requeue itself in its default steps of 1000 ids, one script call each. The server's slow
log (every command of 1 ms or more during the requeue) gives the longest single call: how long
Redis kept every other client waiting at once (one long script would show as the whole
run; a step is milliseconds).

Target (issue 24): 100 000 failed messages requeued in <= 10 s.

    .venv/bin/python bench/mq_bulk_requeue.py --rounds 3
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from harness import Report

from butterfly_common.mq import Broker, scripts
from butterfly_common.testing import RedisServer

TOPIC = "/bench/noop"
SYSTEM = "baichuan bulk requeue"
CHUNK = 1000


def dead_letters(broker: Broker, n: int) -> None:
    """``n`` failed messages on TOPIC, through the broker's publish, claim and fail
    scripts (fail pipelined: the set-up is not what is measured)."""
    for start in range(0, n, CHUNK):
        size = min(CHUNK, n - start)
        broker.publish_many([{"topic": TOPIC, "data": {"n": start + i}} for i in range(size)],
                            force=True)
    k = broker.keys(TOPIC)
    while True:
        claimed = broker.claim(TOPIC, "bench", CHUNK)
        if not claimed:
            break
        pipe = broker.client.pipeline(transaction=False)
        calls = {}
        for i, msg in enumerate(claimed):
            calls[i] = scripts.queue_in(
                pipe, "fail", [k.started, k.delayed, k.failed, k.msg(msg.id)],
                [msg.id, msg.token, f"upstream timeout #{i % 7}", "", "0.001", -1,
                 "exception"])
        scripts.settle(broker.client, pipe.execute(raise_on_error=False), calls)
    counts = broker.counts(TOPIC)
    if counts["failed"] != n:
        raise RuntimeError(f"set-up: {counts}")


def longest_call_ms(client: Any) -> tuple[float, int]:
    """The longest command the server ran since the slow log was emptied (ms, its own
    execution time: while it ran, every other client waited) and how many it logged."""
    entries = client.slowlog_get(100_000)
    return max((e["duration"] for e in entries), default=0) / 1000.0, len(entries)


def one_round(n: int, step: int) -> dict[str, Any]:
    with RedisServer() as server:
        broker = Broker.from_url(server.url)
        dead_letters(broker, n)
        t0 = time.perf_counter()
        preview = broker.bulk(TOPIC, "requeue", "failed", dry_run=True, step=step)
        t1 = time.perf_counter()
        # the steps' calls (milliseconds each), not the commands inside them
        broker.client.config_set("slowlog-log-slower-than", 1000)
        broker.client.config_set("slowlog-max-len", 100_000)
        broker.client.slowlog_reset()
        done = broker.bulk(TOPIC, "requeue", "failed", step=step)
        t2 = time.perf_counter()
        longest, logged = longest_call_ms(broker.client)
        counts = broker.counts(TOPIC)
        if not (preview.matched == done.acted == n and counts["queued"] == n
                and counts["failed"] == 0):
            raise RuntimeError(f"preview {preview}, done {done}, counts {counts}")
        return {"dry": t1 - t0, "seconds": t2 - t1, "steps": done.steps,
                "longest": longest, "logged": logged}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000,
                        help="failed messages to requeue per round (100000)")
    parser.add_argument("--step", type=int, default=1000, help="ids per step (1000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; median kept (3)")
    args = parser.parse_args()
    report = Report("mq_bulk_requeue",
                    f"bulk requeue of {args.messages} failed messages, steps of {args.step}")
    for round_no in range(args.rounds):
        r = one_round(args.messages, args.step)
        report.add(SYSTEM, "seconds", r["seconds"])
        report.add(SYSTEM, "messages/s", args.messages / r["seconds"])
        report.add(SYSTEM, "dry run seconds", r["dry"])
        report.add(SYSTEM, "longest call ms", r["longest"])
        print(f"round {round_no + 1}: requeued in {r['seconds']:.2f} s ({r['steps']} steps), "
              f"dry run {r['dry']:.2f} s, longest server call {r['longest']:.1f} ms "
              f"({r['logged']} commands logged)", file=sys.stderr, flush=True)
    report.note(SYSTEM, f"{args.messages} dead letters of one topic, one script call per "
                        f"step of {args.step} ids; longest call: the server's slow log, Redis "
                        "busy at once")
    report.target(f"{SYSTEM} seconds", report.median(SYSTEM, "seconds"), "<=", 10.0)
    return report.finish()


if __name__ == "__main__":
    sys.exit(main())
