"""``Broker.bulk``: requeue / delete / cancel every message of a topic matching a filter,
counted first (dry run), done in bounded steps; run once per topology (redis, twemproxy,
cluster)."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from butterfly_common.mq import Broker, ErrorKind
from butterfly_common.mq.bulk import CANCELED_ERROR, BulkCounts
from butterfly_common.testing import wait_until


def failed(broker: Broker, topic: str, errors: list[str]) -> list[str]:
    """One dead letter per error text, in order; returns their ids. Returns once the
    server's millisecond clock has moved on, so a later failure sorts after these in the
    failed set (same-millisecond ties sort by id, which made a part count flaky)."""
    ids = [broker.publish(topic, {"n": n}).msg_id for n in range(len(errors))]
    for msg, error in zip(broker.claim(topic, "w1", len(errors)), errors, strict=True):
        assert broker.fail(msg, error, retry=False) == "failed"
    tick_past(time.time())
    return ids


def finished(broker: Broker, topic: str, stats: list[Any]) -> list[str]:
    ids = [broker.publish(topic, {"n": n}).msg_id for n in range(len(stats))]
    for msg, stat in zip(broker.claim(topic, "w1", len(stats)), stats, strict=True):
        assert broker.complete(msg, {"stat": stat, "x": 1})
    return ids


def status_of(broker: Broker, topic: str, ids: list[str]) -> list[str]:
    return [m.status if m else "gone" for m in broker.get_many([(i, topic) for i in ids])]


def tick_past(seconds: float) -> None:
    """Wait until the clock (the server's: same host) is past ``seconds`` + 5 ms."""
    wait_until(lambda: time.time() > seconds + 0.005, 2.0, 0.001, "the clock to tick")


def test_requeue_by_error_dry_run_first(broker: Broker, topic: str) -> None:
    db = failed(broker, topic, ["timeout talking to db", "KeyError: 'x'",
                                "db timeout", "KeyError: 'y'", "DB down"])
    before = broker.counts(topic)
    preview = broker.bulk(topic, "requeue", "failed", error="db", dry_run=True)
    assert (preview.matched, preview.acted, preview.scanned) == (2, 0, 5)
    assert broker.counts(topic) == before  # a dry run changes nothing
    done = broker.bulk(topic, "requeue", "failed", error="db")
    assert (done.matched, done.acted) == (preview.matched, 2)
    assert status_of(broker, topic, db) == ["queued", "failed", "queued", "failed", "failed"]
    # the requeued ones are processed by a consumer, with fresh attempts
    again = broker.claim(topic, "w2", 10)
    assert sorted(m.id for m in again) == sorted([db[0], db[2]])
    assert all(m.attempts == 1 for m in again)
    for m in again:
        assert broker.complete(m, {"ok": 1})
    assert status_of(broker, topic, db) == ["finished", "failed", "finished", "failed",
                                            "failed"]


def test_requeue_finished_by_stat(broker: Broker, topic: str) -> None:
    ids = finished(broker, topic, ["OK", "ERR_UPSTREAM", "OK", "ERR_UPSTREAM", 404])
    assert broker.bulk(topic, "requeue", "finished", stat="ERR_UPSTREAM",
                       dry_run=True).matched == 2
    assert broker.bulk(topic, "requeue", "finished", stat="404").acted == 1  # a raw code
    done = broker.bulk(topic, "requeue", "finished", stat="ERR_UPSTREAM")
    assert done.acted == 2
    assert status_of(broker, topic, ids) == ["finished", "queued", "finished", "queued",
                                             "queued"]
    assert broker.counts(topic)["finished"] == 2


def test_time_range_on_ended_at(broker: Broker, topic: str) -> None:
    early = failed(broker, topic, ["e"] * 3)
    cut = max(m.ended_at for m in broker.get_many([(i, topic) for i in early]))
    tick_past(cut)
    late = failed(broker, topic, ["e"] * 4)
    assert broker.bulk(topic, "requeue", "failed", until=cut, dry_run=True).matched == 3
    assert broker.bulk(topic, "requeue", "failed", since=cut + 0.001,
                       dry_run=True).matched == 4
    assert broker.bulk(topic, "requeue", "failed", since=0, until=cut - 3600,
                       dry_run=True).matched == 0
    assert broker.bulk(topic, "delete", "failed", since=cut + 0.001, error="e").acted == 4
    assert status_of(broker, topic, late) == ["gone"] * 4
    assert status_of(broker, topic, early) == ["failed"] * 3
    assert broker.get(late[0]) is None  # the id index forgot them


def test_cancel_queued_by_created_at_across_priorities(broker: Broker, topic: str) -> None:
    old = [broker.publish(topic, {"n": n}, priority=p).msg_id
           for n, p in enumerate([5, 0, -3, 0, 5, -3])]
    cut = max(m.created_at for m in broker.get_many([(i, topic) for i in old]))
    tick_past(cut)
    new = [broker.publish(topic, {"n": n}, priority=p).msg_id
           for n, p in enumerate([0, 5, -3, 5, 0, -3, 0])]
    calls: list[BulkCounts] = []
    preview = broker.bulk(topic, "cancel", "queued", since=cut + 0.001, dry_run=True, step=4)
    done = broker.bulk(topic, "cancel", "queued", since=cut + 0.001, step=4,
                       progress=lambda c: calls.append(BulkCounts(**c.to_dict())))
    assert preview.matched == done.acted == 7 and done.scanned == 13
    assert len(calls) == 4 and calls[-1].acted == 7  # 4 + 4 + 4 + 1 ids visited
    assert status_of(broker, topic, new) == ["failed"] * 7
    gone = broker.get(new[0], topic)
    assert gone.error_kind == ErrorKind.CANCELED and gone.error == CANCELED_ERROR
    assert broker.get(new[0]).id == new[0]  # still found by id alone
    # the old ones stay, in claim order
    claimed = broker.claim(topic, "w1", 10)
    assert [m.id for m in claimed] == [old[0], old[4], old[1], old[3], old[2], old[5]]
    assert broker.counts(topic)["queued"] == 0
    assert broker.client.zcard(broker.keys(topic).prios) == 0  # empty lists forgotten


def test_cancel_delayed_retries_by_error(broker: Broker, topic: str) -> None:
    ids = [broker.publish(topic, {"n": n}, max_retries=3).msg_id for n in range(4)]
    for msg, error in zip(broker.claim(topic, "w1", 4), ["flaky api", "bug", "flaky api",
                                                         "bug"], strict=True):
        assert broker.fail(msg, error) == "delayed"
    done = broker.bulk(topic, "cancel", "delayed", error="flaky")
    assert (done.matched, done.acted) == (2, 2)
    assert status_of(broker, topic, ids) == ["failed", "delayed", "failed", "delayed"]
    assert broker.counts(topic)["delayed"] == 2


def test_delete_queued_frees_dedup_keys(broker: Broker, topic: str) -> None:
    first = broker.publish(topic, {}, dedup_key="k1").msg_id
    broker.publish(topic, {})
    delayed = broker.publish(topic, {}, delay=60).msg_id
    assert broker.bulk(topic, "delete", "queued").acted == 2
    assert broker.counts(topic)["queued"] == 0 and broker.get(first) is None
    again = broker.publish(topic, {}, dedup_key="k1")
    assert again.created and again.msg_id != first  # the key was let go
    assert broker.bulk(topic, "delete", "delayed").acted == 1
    assert broker.get(delayed, topic) is None


def test_steps_are_bounded(broker: Broker, topic: str) -> None:
    failed(broker, topic, ["boom"] * 95)
    calls: list[int] = []
    preview = broker.bulk(topic, "requeue", "failed", step=10, dry_run=True)
    done = broker.bulk(topic, "requeue", "failed", step=10,
                       progress=lambda c: calls.append(c.acted))
    assert (preview.matched, preview.steps) == (95, 10)
    assert (done.matched, done.acted, done.scanned, done.steps) == (95, 95, 95, 10)
    assert calls == [10, 20, 30, 40, 50, 60, 70, 80, 90, 95]
    assert broker.counts(topic)["queued"] == 95 and broker.counts(topic)["failed"] == 0


def test_mixed_set_leaves_the_rest_untouched(broker: Broker, topic: str) -> None:
    errors = ["match me" if n % 3 == 0 else "other" for n in range(40)]
    ids = failed(broker, topic, errors)
    preview = broker.bulk(topic, "requeue", "failed", error="match", step=7, dry_run=True)
    done = broker.bulk(topic, "requeue", "failed", error="match", step=7)
    assert preview.matched == done.acted == 14 and done.scanned == 40
    assert status_of(broker, topic, ids) == ["queued" if n % 3 == 0 else "failed"
                                             for n in range(40)]
    left = broker.get_many([(i, topic) for n, i in enumerate(ids) if n % 3])
    assert all(m.error == "other" and m.attempts == 1 for m in left)


def test_a_message_failing_again_is_not_taken_twice(broker: Broker, topic: str) -> None:
    """A requeued message that fails again while the steps go on is not requeued again."""
    failed(broker, topic, ["boom"] * 30)

    def consume(_counts: BulkCounts) -> None:
        for msg in broker.claim(topic, "w2", 100):
            broker.fail(msg, "boom again", retry=False)

    done = broker.bulk(topic, "requeue", "failed", step=5, progress=consume)
    assert (done.acted, done.steps) == (30, 7)  # 6 full steps, one to see the end
    # each failed again after its step (progress is called after the last step too)
    assert broker.counts(topic)["failed"] == 30 and broker.counts(topic)["queued"] == 0


def test_in_parts_the_run_carries_over(broker: Broker, topic: str) -> None:
    """Parts of one run (max_steps + cursor) share its id and its start: a message the
    run requeued that fails again between parts is not requeued by a later part, and a
    dead letter that arrives between parts is left alone."""
    failed(broker, topic, ["boom"] * 12)
    first = broker.bulk(topic, "requeue", "failed", step=5, max_steps=1)
    assert (first.acted, first.steps, first.part, first.done) == (5, 1, 1, False)
    for msg in broker.claim(topic, "w2", 100):  # the 5 requeued fail again
        broker.fail(msg, "boom again", retry=False)
    tick_past(time.time())  # the late one joins after the run's start (t0)
    late = failed(broker, topic, ["late"])
    parts = [first]
    while not parts[-1].done:
        parts.append(broker.bulk(topic, "requeue", "failed", step=5, max_steps=1,
                                 cursor=parts[-1].cursor))
    assert [p.part for p in parts] == [1, 2, 3] and {p.run for p in parts} == {first.run}
    assert sum(p.acted for p in parts) == 12
    assert broker.counts(topic)["queued"] == 7 and broker.counts(topic)["failed"] == 6
    assert status_of(broker, topic, late) == ["failed"]


def test_a_cursor_is_for_its_own_run(broker: Broker, topic: str) -> None:
    failed(broker, topic, ["boom"] * 4)
    part = broker.bulk(topic, "delete", "failed", step=1, max_steps=2)
    assert part.cursor and part.acted == 2
    for args, options in [((topic, "delete", "failed"), {"error": "boom"}),
                          ((topic, "delete", "failed"), {"dry_run": True}),
                          ((topic, "requeue", "failed"), {}),
                          ((f"{topic}x", "delete", "failed"), {})]:
        with pytest.raises(ValueError, match="another bulk run"):
            broker.bulk(*args, cursor=part.cursor, **options)
    with pytest.raises(ValueError, match="malformed"):
        broker.bulk(topic, "delete", "failed", cursor=part.cursor[:-2])
    with pytest.raises(ValueError, match="max_steps"):
        broker.bulk(topic, "delete", "failed", max_steps=0)
    assert broker.counts(topic)["failed"] == 2
    rest = broker.bulk(topic, "delete", "failed", cursor=part.cursor)  # the rest at once
    assert (rest.acted, rest.done, rest.part) == (2, True, 2)


@pytest.mark.parametrize("args,word", [
    (("purge", "failed"), "action"), (("requeue", "queued"), "requeue takes"),
    (("cancel", "failed"), "cancel takes"), (("requeue", "bogus"), "requeue takes"),
    (("requeue", "failed", {"since": 10, "until": 5}), "since"),
    (("requeue", "failed", {"since": float("nan")}), "since"),
    (("requeue", "failed", {"until": -1}), "until"),
    (("requeue", "failed", {"until": 1e308}), "until"),
    (("requeue", "failed", {"step": 0}), "step"),
    (("requeue", "failed", {"step": 10**6}), "step")])
def test_bad_requests_are_refused(broker: Broker, topic: str, args: tuple[Any, ...],
                                  word: str) -> None:
    failed(broker, topic, ["x"])
    options = args[2] if len(args) > 2 else {}
    with pytest.raises(ValueError, match=word):
        broker.bulk(topic, args[0], args[1], **options)
    assert broker.counts(topic)["failed"] == 1


def test_empty_topic(broker: Broker, topic: str) -> None:
    for status in ("failed", "queued"):
        action = "requeue" if status == "failed" else "cancel"
        done = broker.bulk(topic, action, status)
        assert (done.scanned, done.matched, done.steps) == (0, 0, 1)


# -- the framework's consumer -------------------------------------------------------------

def test_requeued_dead_letters_run_again_in_a_consumer(sample_consumers: Any) -> None:
    """Real consumers (redis, twemproxy): a handler's dead letters, requeued by filter,
    run again; those failing anew carry the new error, which the old filter misses."""
    broker, start, _ = sample_consumers
    topic = "/jobs/flaky"
    broker.purge(topic, "all")
    start()
    run = uuid.uuid4().hex[:8]
    ids = [broker.publish(topic, {"key": f"{run}-{n}", "failures": 1 if n < 4 else 2}
                          ).msg_id for n in range(6)]

    def statuses() -> list[str]:
        return [m.status if m else "gone" for m in broker.get_many([(i, topic) for i in ids])]

    wait_until(lambda: statuses() == ["failed"] * 6, 30, what="every message dead-lettered")
    assert broker.bulk(topic, "requeue", "failed", error="failure 2",
                       dry_run=True).matched == 0
    done = broker.bulk(topic, "requeue", "failed", error="failure 1", step=2)
    assert done.acted == 6 and done.steps == 4  # 2 + 2 + 2 ids, one step to see the end
    wait_until(lambda: statuses() == ["finished"] * 4 + ["failed"] * 2, 30,
               what="the requeued ones finished, the others failed again")
    assert broker.get(ids[0], topic).result["calls"] == 2
    assert broker.bulk(topic, "requeue", "failed", error="failure 1", dry_run=True).matched == 0
    assert broker.bulk(topic, "requeue", "failed", error="failure 2", dry_run=True).matched == 2
