"""The framework's consumer tells a message's batch its final outcome (``consumer.py``,
right after the fenced complete / fail), so a batch ends and calls back without any
repair; on redis, then two shards behind nutcracker."""

from __future__ import annotations

from butterfly_common import mq
from butterfly_common.testing import wait_until

DONE = "/jobs/batch_done"  # nobody serves it: the callbacks wait there to be counted


def ended(broker, bid):
    b = broker.get_batch(bid, repair=False)  # no reconcile: only what consumers told
    return b if b.ended_at is not None else None


def test_the_consumer_counts_ends_and_the_callbacks_come_once(sample_consumers):
    broker, start, _ = sample_consumers
    start(threads=4)
    ok_id, _ = mq.publish_batch(  # the process's broker: the same Redis as the fixture's
        [{"topic": "/jobs/add", "data": {"a": n, "b": 1}} for n in range(12)],
        on_success=DONE, on_complete=DONE, force=True)
    mixed_id, _ = broker.publish_batch(
        [{"topic": "/jobs/add", "data": {"a": 1, "b": 2}},
         {"topic": "/jobs/add", "data": {"a": 1}}],  # ERR_BAD_PARAMS: dead-lettered
        on_success=DONE, on_complete=DONE, force=True)
    ok = wait_until(lambda: ended(broker, ok_id), 20, what="the all-OK batch to end")
    mixed = wait_until(lambda: ended(broker, mixed_id), 20, what="the mixed batch to end")
    assert (ok.state, ok.ok, ok.failed) == ("ended", 12, 0)
    assert (mixed.ok, mixed.failed) == (1, 1)
    told = sorted((m.data["batch_id"] == ok_id, m.data["kind"])
                  for m in broker.claim(DONE, "counter", 100))
    assert told == [(False, "complete"), (True, "complete"), (True, "success")]
