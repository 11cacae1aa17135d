"""Notices are hints: duplicated, reordered, forged or lost, they never run a task twice,
never move a task backwards, and a flow whose notices are all lost still ends (sweep)."""

from __future__ import annotations

import random
import threading
import time
import uuid

from xq_helpers import XQ, fleet

from butterfly_common.mq import Broker

NOTICE = "/xingqiao/task_notice"
RANK = {"waiting": 0, "pending": 1, "started": 2, "retrying": 2, "finished": 3,
        "failed": 3, "skipped": 3, "canceled": 3, "timed_out": 3}


def diamond(xq: XQ, k: str) -> str:
    name = f"diamond-{k}"
    xq.flow_type(name, [
        {"label": "a", "cmd": "/xqt/ok", "params": {"key": k + "a"}},
        {"label": "b", "cmd": "/xqt/flaky", "params": {"key": k + "b", "failures": 1},
         "dependencies": ["a"], "retrymax": 1, "retry_delay": 0.1},
        {"label": "c", "cmd": "/xqt/ok", "params": {"key": k + "c"}, "dependencies": ["a"]},
        {"label": "d", "cmd": "/xqt/ok", "params": {"key": k + "d"},
         "dependencies": ["b", "c"]},
    ])
    return name


def test_duplicated_and_reordered_notices_change_nothing(xq: XQ):
    k = uuid.uuid4().hex[:10]
    broker = Broker(xq.redis)
    job_ids = [xq.create(diamond(xq, k + str(i))) for i in range(3)]
    seen: dict[int, list[str]] = {}
    sent = {"n": 0}
    stop = threading.Event()

    def storm() -> None:
        """Every few ms: a notice for every attempt ever dispatched, twice, shuffled."""
        ids: set[tuple[str, str]] = set()
        while not stop.is_set():
            for job_id in job_ids:
                for t in xq.tasks(job_id).values():
                    seen.setdefault(t["task_id"], []).append(t["task_status"])
                    if t["task_reqid"]:
                        ids.add((t["task_reqid"], t["task_cmd"]))
            batch = [pair for pair in ids for _ in range(2)]
            random.shuffle(batch)
            for msg_id, topic in batch:
                broker.publish(NOTICE, {"msg_id": msg_id, "topic": topic,
                                        "status": "finished", "stat": "OK", "cost": 0},
                               force=True)
                sent["n"] += 1
            time.sleep(0.005)

    thread = threading.Thread(target=storm, daemon=True)
    thread.start()
    try:
        jobs = [xq.wait(job_id, 30) for job_id in job_ids]
        time.sleep(1.0)  # let the storm hit the finished flows too
    finally:
        stop.set()
        thread.join(10)
    assert all(j["job_status"] == "finished" for j in jobs), jobs
    for i in range(3):
        key = k + str(i)
        # exactly one run each; b failed once then succeeded on its one retry
        assert [xq.runs(key + s) for s in "abcd"] == [1, 2, 1, 1]
    for task_id, states in seen.items():
        ranks = [RANK[s] for s in states]
        assert ranks == sorted(ranks), (task_id, states)  # never backwards
    print(f"\nduplicate/reordered notices injected: {sent['n']}")
    assert sent["n"] > 50


def test_forged_notice_for_a_running_task_is_ignored(xq: XQ):
    k = uuid.uuid4().hex[:10]
    xq.flow_type(f"forge-{k}", [{"label": "s", "cmd": "/xqt/sleep",
                                 "params": {"seconds": 1.0, "key": k}}])
    job_id = xq.create(f"forge-{k}")
    task = xq.tasks(job_id)["s"]
    Broker(xq.redis).publish(NOTICE, {"msg_id": task["task_reqid"], "topic": "/xqt/sleep",
                                      "status": "finished", "stat": "OK", "cost": 0},
                             force=True)
    time.sleep(0.5)
    assert xq.tasks(job_id)["s"]["task_status"] in ("pending", "started")
    assert xq.wait(job_id)["job_status"] == "finished" and xq.runs(k) == 1


def test_all_notices_lost_flows_still_finish_within_the_sweep_bound():
    interval, grace = 0.3, 0.3
    with fleet(XINGQIAO_DROP_NOTICES="1", XINGQIAO_SWEEP_INTERVAL=str(interval),
               XINGQIAO_NOTICE_GRACE=str(grace)) as xq:
        k = uuid.uuid4().hex[:10]
        name = diamond(xq, k)
        started = time.monotonic()
        job_ids = [xq.create(name) for _ in range(5)]
        jobs = [xq.wait(job_id, 60) for job_id in job_ids]
        took = time.monotonic() - started
        assert all(j["job_status"] == "finished" for j in jobs)
        # b's key is shared: its first run fails (one retry), the other runs succeed
        assert [xq.runs(k + s) for s in "abcd"] == [5, 6, 5, 5]
        # 3 levels + one retry, each at most an interval + grace + its own time;
        # generous slack for a shared, loaded machine
        bound = 4 * (interval * 2 + grace) + 10
        print(f"\nlost notices: 5 diamond flows finished in {took:.2f}s "
              f"(sweep bound {bound:.1f}s)")
        assert took < bound
