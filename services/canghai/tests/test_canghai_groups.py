"""The console's queue counts see concurrency groups' ready messages (topic_stats.lua)."""

from __future__ import annotations

from butterfly_canghai import queues


def test_topic_counts_see_grouped_messages(client, broker) -> None:
    broker.publish("/g/grp", {}, force=True)
    for group in ("t1", "t1", "t2"):
        broker.publish("/g/grp", {}, force=True, group=group)
    (row,) = [r for r in queues.topic_counts(broker) if r.topic == "/g/grp"]
    assert row.counts["queued"] == 4 == broker.counts("/g/grp")["queued"]
