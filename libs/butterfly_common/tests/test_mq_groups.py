"""Concurrency groups ("concurrency keys"), run once per topology (redis, twemproxy with two
shards, cluster): a message's ``group`` is served round-robin with the topic's other
groups, each group under its ``max_running``; a group at its cap is passed over without
claiming its message; ungrouped messages keep their path and pay nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest

from butterfly_common.mq import Broker
from butterfly_common.testing import wait_until
from butterfly_common.testing.sampling import GroupSampler


#: Started messages per group, read in one script (an atomic snapshot of the records
#: themselves, not of the broker's own per-group counters).
def publish_group(broker: Broker, topic: str, group: str | None, n: int,
                  **options: Any) -> list[str]:
    results = broker.publish_many([{"topic": topic, "data": {"i": i}, "group": group,
                                    **options} for i in range(n)])
    assert all(r.created for r in results)
    return [r.msg_id for r in results]


def group_keys(broker: Broker, topic: str) -> list[str]:
    base = broker.keys(topic).queue.removesuffix("queue")
    return [base + "groups", base + "grun", base + "gseq"]


# -- round-robin ------------------------------------------------------------------------

def test_claims_serve_groups_round_robin(broker: Broker, topic: str) -> None:
    a = publish_group(broker, topic, "A", 5)
    b = publish_group(broker, topic, "B", 2)
    order = [broker.claim(topic, "w1", 1)[0].id for _ in range(7)]
    assert order == [a[0], b[0], a[1], b[1], a[2], a[3], a[4]]
    assert broker.claim(topic, "w1", 5) == []


def test_one_claim_takes_one_per_group_per_turn(broker: Broker, topic: str) -> None:
    a = publish_group(broker, topic, "A", 4)
    b = publish_group(broker, topic, "B", 4)
    c = publish_group(broker, topic, "C", 1)
    got = [m.id for m in broker.claim(topic, "w1", 5)]
    assert got == [a[0], b[0], c[0], a[1], b[1]]
    assert [m.group for m in broker.claim(topic, "w1", 2)] == ["A", "B"]  # the ring moved on


def test_priority_holds_within_a_group(broker: Broker, topic: str) -> None:
    low = broker.publish(topic, {}, group="A", priority=-3).msg_id
    plain = broker.publish(topic, {}, group="A").msg_id
    high = broker.publish(topic, {}, group="A", priority=7).msg_id
    front = broker.publish(topic, {}, group="A", at_front=True).msg_id
    assert [m.id for m in broker.claim(topic, "w1", 4)] == [high, front, plain, low]


def test_ungrouped_messages_go_first_and_keep_their_path(broker: Broker,
                                                         topic: str) -> None:
    g = publish_group(broker, topic, "A", 2)
    plain = publish_group(broker, topic, None, 2)
    assert [m.id for m in broker.claim(topic, "w1", 3)] == [*plain, g[0]]
    assert broker.get(plain[0], topic).group == ""


def test_a_topic_without_groups_has_no_group_keys(broker: Broker, topic: str) -> None:
    ids = publish_group(broker, topic, None, 3)
    assert not broker.client.hexists(broker.keys(topic).msg(ids[0]), "group")
    broker.set_limits(topic, max_running=5)
    msgs = broker.claim(topic, "w1", 5)
    assert [m.id for m in msgs] == ids
    broker.release(msgs[:1])
    broker.fail(msgs[1], "boom", retry=False)
    broker.complete(msgs[2])
    assert broker.client.exists(*group_keys(broker, topic)) == 0


# -- group limits -----------------------------------------------------------------------

def test_group_max_running_passes_a_full_group_over(broker: Broker, topic: str) -> None:
    broker.set_limits(topic, group_max_running=2)
    a = publish_group(broker, topic, "A", 10)
    b = publish_group(broker, topic, "B", 10)
    got = [m.id for m in broker.claim(topic, "w1", 10)]
    assert got == [a[0], b[0], a[1], b[1]]
    assert broker.claim(topic, "w2", 10) == []
    state = broker.limits(topic)
    assert state.group_running == {"A": 2, "B": 2} and state.running == 4
    assert state.group_held == 2 and state.group_held_at is not None
    assert state.groups_ready == 2
    assert broker.counts(topic)["queued"] == 16  # held back: still queued, never claimed
    assert broker.get(a[2], topic).status == "queued"
    assert broker.complete(broker.get(a[0], topic))
    assert [m.id for m in broker.claim(topic, "w2", 10)] == [a[2]]


def test_group_limits_do_not_cap_ungrouped_messages(broker: Broker, topic: str) -> None:
    broker.set_limits(topic, group_max_running=1)
    plain = publish_group(broker, topic, None, 4)
    publish_group(broker, topic, "A", 2)
    assert [m.id for m in broker.claim(topic, "w1", 10)][:4] == plain
    assert broker.limits(topic).group_running == {"A": 1}


def test_a_group_limit_overrides_the_default(broker: Broker, topic: str) -> None:
    state = broker.set_limits(topic, group_max_running=3, group_limits={"small": 1})
    assert (state.group_max_running, state.group_limits) == (3, {"small": 1})
    publish_group(broker, topic, "small", 5)
    publish_group(broker, topic, "big", 5)
    got = broker.claim(topic, "w1", 10)
    assert sorted(m.group for m in got) == ["big", "big", "big", "small"]


def test_topic_max_running_still_caps_the_total(broker: Broker, topic: str) -> None:
    broker.set_limits(topic, max_running=3, group_max_running=2)
    publish_group(broker, topic, "A", 5)
    publish_group(broker, topic, "B", 5)
    assert len(broker.claim(topic, "w1", 10)) == 3
    assert broker.limits(topic).held == 1  # grouped ids were ready: the topic limit held


@pytest.mark.parametrize("end", ["complete", "fail_retry", "fail_dead", "release",
                                 "delete", "reap", "purge", "bulk_delete"])
def test_every_end_of_a_started_message_frees_its_group_slot(broker: Broker, topic: str,
                                                             end: str) -> None:
    broker.set_limits(topic, group_max_running=1)
    first, second = publish_group(broker, topic, "A", 2)
    (msg,) = broker.claim(topic, "w1", 5)
    assert msg.id == first and broker.claim(topic, "w1", 5) == []
    if end == "complete":
        assert broker.complete(msg)
    elif end == "fail_retry":
        assert broker.fail(msg, "boom") in ("delayed", "failed")
    elif end == "fail_dead":
        assert broker.fail(msg, "boom", retry=False) == "failed"
    elif end == "release":
        assert broker.release([msg]) == 1
    elif end == "delete":
        assert broker.delete(topic, msg.id)
    elif end == "reap":  # the lease (0.3 s) runs out: lost, back to the front of its group
        wait_until(lambda: broker.reap(topic), timeout=10, what="lease expiry")
    elif end == "purge":
        assert broker.purge(topic, "started") == 1
    elif end == "bulk_delete":
        assert broker.bulk(topic, "delete", "started").acted == 1
    assert broker.limits(topic).group_running == {}
    (nxt,) = broker.claim(topic, "w2", 5)
    assert nxt.id == (first if end in ("release", "reap") else second)


def test_clearing_group_limits_drops_them(broker: Broker, topic: str) -> None:
    broker.set_limits(topic, group_max_running=1, group_limits={"x": 2})
    state = broker.set_limits(topic, max_running=4)
    assert (state.group_max_running, state.group_limits) == (None, {})
    assert broker.clear_limits(topic).limited is False
    assert broker.client.exists(broker.keys(topic).limits) == 0


@pytest.mark.parametrize("args", [
    {"group_max_running": 0}, {"group_max_running": 1.5}, {"group_max_running": "2"},
    {"group_limits": {"a b": 1}}, {"group_limits": {"a": 0}}, {"group_limits": {"a": None}},
    {"group_limits": {"": 1}}, {"group_limits": {"x" * 65: 1}}, {"group_limits": [1]},
    {"group_limits": {f"g{i}": 1 for i in range(1001)}}])
def test_bad_group_limits_are_refused(broker: Broker, topic: str,
                                      args: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        broker.set_limits(topic, **args)
    assert broker.client.exists(broker.keys(topic).limits) == 0


@pytest.mark.parametrize("group", ["", "a b", "x{y}", "x" * 65, 5, "é"])
def test_bad_groups_are_refused(broker: Broker, topic: str, group: Any) -> None:
    with pytest.raises(ValueError):
        broker.publish(topic, {}, group=group)
    with pytest.raises(ValueError):
        broker.publish_many([{"topic": topic, "data": {}, "group": group}])
    assert broker.counts(topic)["queued"] == 0


# -- the other operations see grouped messages -----------------------------------------------

def test_counts_list_delete_and_purge_see_grouped_messages(broker: Broker,
                                                           topic: str) -> None:
    plain = publish_group(broker, topic, None, 2)
    a = publish_group(broker, topic, "A", 3)
    b = publish_group(broker, topic, "B", 1)
    assert broker.counts(topic)["queued"] == 6
    total, msgs = broker.list(topic, "queued", 1, 20, newest_first=False)
    assert total == 6 and [m.id for m in msgs] == [*plain, *a, *b]
    total, msgs = broker.list(topic, "queued", 2, 2, newest_first=True)
    assert [m.id for m in msgs] == [a[1], a[0]]
    assert broker.delete(topic, b[0])
    assert broker.limits(topic).groups_ready == 1  # B has no ready id left: off the ring
    assert broker.purge(topic, "queued") == 5
    assert broker.counts(topic)["queued"] == 0
    assert broker.client.exists(group_keys(broker, topic)[0]) == 0


@pytest.mark.parametrize("step", [1, 2, 1000])
def test_bulk_on_queued_sees_grouped_messages(broker: Broker, topic: str, step: int) -> None:
    plain = publish_group(broker, topic, None, 2)
    a = publish_group(broker, topic, "A", 3)
    b = publish_group(broker, topic, "B", 2)
    assert broker.bulk(topic, "delete", "queued", dry_run=True, step=step).matched == 7
    counts = broker.bulk(topic, "cancel", "queued", step=step)
    assert (counts.matched, counts.acted) == (7, 7)
    assert broker.counts(topic)["queued"] == 0 and broker.counts(topic)["failed"] == 7
    assert broker.client.exists(group_keys(broker, topic)[0]) == 0  # the ring emptied
    assert {m.id for m in broker.list(topic, "failed", 1, 20)[1]} == {*plain, *a, *b}


def test_delayed_and_retried_messages_come_back_to_their_group(broker: Broker,
                                                               topic: str) -> None:
    broker.set_limits(topic, group_max_running=1)
    (late,) = publish_group(broker, topic, "A", 1, delay=0.05)
    (other,) = publish_group(broker, topic, "A", 1, max_retries=1)
    (msg,) = broker.claim(topic, "w1", 5)
    assert msg.id == other
    assert broker.fail(msg, "boom") == "delayed"
    wait_until(lambda: broker.counts(topic)["delayed"] == 2, timeout=5, what="both delayed")
    # both come due and are promoted into group A by the claim: one at a time still
    claimed = wait_until(lambda: broker.claim(topic, "w1", 5), timeout=5,
                         what="a claim after the delays")
    assert len(claimed) == 1 and claimed[0].group == "A"
    assert broker.limits(topic).group_running == {"A": 1}
    assert broker.complete(claimed[0])
    (rest,) = wait_until(lambda: broker.claim(topic, "w1", 5), timeout=5,
                         what="the other one")
    assert {claimed[0].id, rest.id} == {late, other} and rest.group == "A"


def test_debounce_replaces_a_grouped_message(broker: Broker, topic: str) -> None:
    first = broker.publish(topic, {"v": 1}, group="A", dedup_key="k",
                           dedup_mode="debounce", dedup_ttl=60)
    second = broker.publish(topic, {"v": 2}, group="A", dedup_key="k",
                            dedup_mode="debounce", dedup_ttl=60)
    assert second.dedup and second.dedup["replaced"] == first.msg_id
    assert broker.counts(topic)["queued"] == 1
    assert [m.data for m in broker.claim(topic, "w1", 5)] == [{"v": 2}]


def test_requeued_dead_letters_rejoin_their_group(broker: Broker, topic: str) -> None:
    (mid,) = publish_group(broker, topic, "A", 1)
    (msg,) = broker.claim(topic, "w1", 1)
    assert broker.fail(msg, "boom", retry=False) == "failed"
    assert broker.requeue(topic, mid)
    assert [m.group for m in broker.claim(topic, "w1", 1)] == ["A"]


# -- several processes: 8 consumers x 8 threads --------------------------------------------

CHILD = """
import sys, threading, time
from redis.exceptions import ConnectionError, TimeoutError
from butterfly_common.mq import Broker
from butterfly_common.redis_client import make_redis
url, topic, stop_at, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
broker = Broker(make_redis(url), lease=5.0)
done_key = broker.keys(topic).finished
end = time.monotonic() + 120
def step(n):
    msgs = broker.claim(topic, f"p{sys.argv[5]}-{n}", 2)
    if not msgs:
        broker.reap(topic)  # a claim lost to a client-side error comes back after its lease
        time.sleep(0.002)
        return
    time.sleep(float(sys.argv[6]))
    for m in msgs:
        broker.complete(m, {"ok": 1})
def loop(n):
    while time.monotonic() < end and broker.client.zcard(done_key) < stop_at:
        try:
            step(n)
        except (ConnectionError, TimeoutError):  # a loaded machine's slow spell: go on
            time.sleep(0.05)
ts = [threading.Thread(target=loop, args=(n,)) for n in range(threads)]
for t in ts: t.start()
for t in ts: t.join()
"""


def run_children(url: str, topic: str, stop_at: int, work: float, done: Any,
                 procs: int = 8, threads: int = 8) -> None:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    children = [subprocess.Popen([sys.executable, "-c", CHILD, url, topic, str(stop_at),
                                  str(threads), str(p), str(work)], env=env)
                for p in range(procs)]
    try:
        wait_until(done, timeout=150, interval=0.05, what="the consumers' work")
    finally:
        for child in children:
            assert child.wait(150) == 0


def test_group_limits_hold_across_8_processes_of_8_threads(broker: Broker, topic: str,
                                                           mq_backend: Any) -> None:
    broker.set_limits(topic, group_max_running=3, group_limits={"tiny": 1})
    for group in ("A", "B", "tiny"):
        publish_group(broker, topic, group, 50)
    plain = publish_group(broker, topic, None, 30)
    total = 180
    with GroupSampler(broker, topic) as sampler:
        run_children(mq_backend.url, topic, total, 0.01,
                     lambda: broker.counts(topic)["finished"] == total)
    assert sampler.samples > 20
    assert sampler.peak["A"] <= 3 and sampler.peak["B"] <= 3 and sampler.peak["tiny"] <= 1
    assert sampler.peak["A"] >= 2  # a cap, not a lock: 64 threads ran several at once
    state = broker.limits(topic)
    assert state.group_running == {} and state.group_held > 0
    assert all(m and m.status == "finished" for m in broker.get_many(
        [(i, topic) for i in plain]))


def test_a_small_group_is_not_starved_by_a_big_one(broker: Broker, topic: str,
                                                   mq_backend: Any) -> None:
    """10 000 messages of group A, then 10 of B: B's all finish within the first 5 % of
    the completions (round-robin), though every A was ready before any B."""
    big = publish_group(broker, topic, "A", 10_000)
    small = publish_group(broker, topic, "B", 10)
    assert len(big) == 10_000
    ttl = broker.get(small[0], topic).result_ttl * 1000

    def small_done() -> bool:
        return all(m and m.status == "finished"
                   for m in broker.get_many([(i, topic) for i in small]))

    # the consumers stop after 1 000 completions (10 %): B must be done long before
    run_children(mq_backend.url, topic, 1000, 0.0, small_done)
    last_b = max(broker.get(i, topic).ended_at or 0 for i in small)
    finished = broker.keys(topic).finished
    # finished is scored by ended_at + result_ttl: the completions up to B's last
    before = broker.client.zcount(finished, "-inf", round(last_b * 1000 + ttl))
    print(f"{mq_backend.name}: B's 10 finished within the first {before} completions")
    assert before <= 0.05 * 10_010, before


# -- the framework's consumer -------------------------------------------------------------

def test_consumers_respect_group_limits(sample_consumers: Any) -> None:
    """Two real consumers of 4 threads each (redis, twemproxy): never more than a group's
    cap running, round-robin lets the small group through, every message runs."""
    broker, start, _ = sample_consumers
    topic = "/jobs/slow"
    broker.clear_limits(topic)
    broker.purge(topic, "all")
    broker.set_limits(topic, group_max_running=2)
    try:
        start(threads=4)
        start(threads=4)
        big = [broker.publish(topic, {"seconds": 0.03}, group="big").msg_id
               for _ in range(16)]
        small = [broker.publish(topic, {"seconds": 0.03}, group="small").msg_id
                 for _ in range(2)]
        with GroupSampler(broker, topic) as sampler:
            wait_until(lambda: all(m and m.status == "finished"
                                   for m in broker.get_many([(i, topic) for i in small])),
                       30, what="the small group finished")
            assert any(m and m.status != "finished"
                       for m in broker.get_many([(i, topic) for i in big]))
            wait_until(lambda: all(m and m.status == "finished"
                                   for m in broker.get_many([(i, topic) for i in big])),
                       30, what="every message finished")
        assert sampler.samples > 10
        assert sampler.peak["big"] <= 2 and sampler.peak.get("small", 0) <= 2
        assert broker.limits(topic).group_held > 0
    finally:
        broker.clear_limits(topic)
