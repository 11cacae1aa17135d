"""Message priorities, run once per topology (redis, twemproxy, cluster).

Higher first, FIFO within one priority, ``at_front`` at the head of its own priority; every
path that makes a message ready again (delay, retry, release, reap, requeue) keeps its
priority; counts, pages, delete and purge see every priority's list.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from butterfly_common.mq import MAX_PRIORITY, MIN_PRIORITY, Broker
from butterfly_common.redis_client import make_redis
from butterfly_common.testing import RedisServer, wait_until


def claim_ids(broker: Broker, topic: str, n: int = 1) -> list[str]:
    return [m.id for m in broker.claim(topic, "w1", n)]


def drain_one_by_one(broker: Broker, topic: str) -> list[str]:
    out: list[str] = []
    while True:
        got = claim_ids(broker, topic)
        if not got:
            return out
        out += got


def publish_mix(broker: Broker, topic: str) -> dict[str, str]:
    """a0 b0 (0), c5 d5 (5), e-5 (-5), f100 (100), g-100 (-100), h5 (5), published in
    this order; returns name -> id."""
    plan = [("a", 0), ("b", 0), ("c", 5), ("d", 5), ("e", -5), ("f", MAX_PRIORITY),
            ("g", MIN_PRIORITY), ("h", 5)]
    return {name: broker.publish(topic, {"n": name}, priority=p).msg_id for name, p in plan}


CLAIM_ORDER = ["f", "c", "d", "h", "a", "b", "e", "g"]


def test_claims_take_the_highest_priority_first_fifo_within(broker: Broker, topic: str
                                                             ) -> None:
    ids = publish_mix(broker, topic)
    name = {v: k for k, v in ids.items()}
    assert [name[i] for i in drain_one_by_one(broker, topic)] == CLAIM_ORDER
    # every list emptied: the priority index forgot them all
    assert broker.client.zcard(broker.keys(topic).prios) == 0


def test_one_claim_of_many_spans_priorities_in_order(broker: Broker, topic: str) -> None:
    ids = publish_mix(broker, topic)
    name = {v: k for k, v in ids.items()}
    first = claim_ids(broker, topic, 3)
    rest = claim_ids(broker, topic, 10)
    assert [name[i] for i in first] == CLAIM_ORDER[:3]
    assert [name[i] for i in rest] == CLAIM_ORDER[3:]


def test_the_record_shows_its_priority(broker: Broker, topic: str) -> None:
    plain = broker.publish(topic, {}).msg_id
    high = broker.publish(topic, {}, priority=7).msg_id
    assert broker.get(plain, topic).priority == 0
    assert broker.get(high, topic).priority == 7
    assert broker.get(high).to_dict()["priority"] == 7
    (claimed,) = broker.claim(topic, "w1")
    assert (claimed.id, claimed.priority) == (high, 7)


def test_default_priority_touches_no_priority_key(broker: Broker, topic: str) -> None:
    k = broker.keys(topic)
    broker.publish(topic, {})
    broker.publish(topic, {}, at_front=True)
    assert broker.client.exists(k.prios) == 0
    assert broker.client.llen(k.queue) == 2
    assert len(claim_ids(broker, topic, 5)) == 2


def test_at_front_is_the_head_of_its_own_priority(broker: Broker, topic: str) -> None:
    x = broker.publish(topic, {}, priority=5).msg_id
    y = broker.publish(topic, {}, priority=5, at_front=True).msg_id
    z = broker.publish(topic, {}, at_front=True).msg_id
    w = broker.publish(topic, {}, priority=-1, at_front=True).msg_id
    assert drain_one_by_one(broker, topic) == [y, x, z, w]


def test_a_delayed_message_becomes_ready_at_its_priority(broker: Broker, topic: str) -> None:
    low = broker.publish(topic, {}).msg_id
    high = broker.publish(topic, {}, priority=3, delay=0.05).msg_id
    due = time.time() + 0.05
    wait_until(lambda: time.time() > due + 0.01, 5, what="the delay")
    assert claim_ids(broker, topic) == [high]
    assert claim_ids(broker, topic) == [low]


def test_retry_release_reap_and_requeue_keep_the_priority(broker: Broker, topic: str) -> None:
    low = broker.publish(topic, {}).msg_id
    high = broker.publish(topic, {}, priority=9, max_retries=1).msg_id
    # release: back at the head of priority 9
    (msg,) = broker.claim(topic, "w1")
    assert msg.id == high and broker.release([msg]) == 1
    # retry after a failure: the backoff ends, the retry is ready at priority 9 again
    (msg,) = broker.claim(topic, "w1")
    assert msg.id == high and broker.fail(msg, "boom") == "delayed"
    (_, due_ms), = broker.client.zrange(broker.keys(topic).delayed, 0, -1, withscores=True)
    wait_until(lambda: time.time() > due_ms / 1000 + 0.01, 5, what="the retry's backoff")
    (msg,) = broker.claim(topic, "w1")
    assert msg.id == high and msg.attempts == 2
    # lease expiry: reap returns it to the head of priority 9
    deadline = time.time() + broker.lease + 0.05
    wait_until(lambda: time.time() > deadline, 5, what="the lease")
    assert broker.reap(topic) == 1
    (msg,) = broker.claim(topic, "w1")
    assert msg.id == high
    # dead letter, then requeue: priority 9 still
    assert broker.fail(msg, "again", retry=False) == "failed"
    assert broker.requeue(topic, high)
    assert claim_ids(broker, topic) == [high]
    assert claim_ids(broker, topic) == [low]


def test_counts_pages_delete_and_purge_see_every_priority(broker: Broker, topic: str
                                                          ) -> None:
    ids = publish_mix(broker, topic)
    name = {v: k for k, v in ids.items()}
    assert broker.counts(topic)["queued"] == 8
    oldest = [[name[m.id] for m in broker.list(topic, "queued", page, 3, newest_first=False)[1]]
              for page in (1, 2, 3)]
    assert oldest == [CLAIM_ORDER[0:3], CLAIM_ORDER[3:6], CLAIM_ORDER[6:8]]
    newest = [[name[m.id] for m in broker.list(topic, "queued", page, 3)[1]]
              for page in (1, 2, 3)]
    back = CLAIM_ORDER[::-1]
    assert newest == [back[0:3], back[3:6], back[6:8]]
    total, page = broker.list(topic, "queued", 1, 100, newest_first=False)
    assert total == 8 and [m.priority for m in page] == [100, 5, 5, 5, 0, 0, -5, -100]
    # delete the only priority-100 message: its list and index entry go with it
    k = broker.keys(topic)
    assert broker.delete(topic, ids["f"])
    assert broker.client.exists(k.ready(MAX_PRIORITY)) == 0
    assert broker.client.zscore(k.prios, str(MAX_PRIORITY)) is None
    assert broker.counts(topic)["queued"] == 7
    # purge in batches smaller than one priority's list
    broker.batch = 2
    assert broker.purge(topic, "queued") == 7
    assert broker.counts(topic)["queued"] == 0
    assert broker.client.exists(k.prios, k.queue, k.ready(5), k.ready(-5)) == 0
    assert all(broker.get(i, topic) is None for i in ids.values())


@pytest.mark.parametrize("bad", [MAX_PRIORITY + 1, MIN_PRIORITY - 1, 1.5, True, "1", None])
def test_a_bad_priority_is_refused_before_anything_is_written(broker: Broker, topic: str,
                                                              bad: object) -> None:
    with pytest.raises(ValueError, match=r"priority must be an integer -100\.\.100"):
        broker.publish(topic, {}, priority=bad)  # type: ignore[arg-type]
    assert broker.counts(topic)["queued"] == 0


def test_the_command_line_publishes_with_a_priority(tmp_path) -> None:
    with RedisServer() as server:
        env = {**os.environ, "BUTTERFLY_REDIS_URL": server.url,
               "BUTTERFLY_LOG_DIR": str(tmp_path / "log")}
        argv = [sys.executable, "-m", "butterfly_common.cli", "publish", "/cli/prio", "{}",
                "--force"]
        done = subprocess.run([*argv, "--priority", "7"], env=env, capture_output=True,
                              text=True, timeout=60, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        msg_id = json.loads(done.stdout)["msg_id"]
        assert Broker(make_redis(server.url)).get(msg_id, "/cli/prio").priority == 7
        bad = subprocess.run([*argv, "--priority", "500"], env=env, capture_output=True,
                             text=True, timeout=60, cwd=tmp_path)
        assert bad.returncode == 2 and "priority must be an integer -100..100" in bad.stderr
