"""Request ids: format, order, uniqueness across processes, kept from callers."""

from __future__ import annotations

import multiprocessing
import time

from butterfly_common.reqid import is_valid_reqid, new_reqid, reqid_time


def _generate(n: int, queue) -> None:
    queue.put([new_reqid() for _ in range(n)])


def test_format_and_time():
    rid = new_reqid()
    assert is_valid_reqid(rid)
    assert abs(reqid_time(rid) - time.time()) < 2


def test_time_ordered_within_a_process():
    ids = [new_reqid() for _ in range(20000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)


def test_unique_across_processes():
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_generate, args=(30000, queue)) for _ in range(2)]
    for p in procs:
        p.start()
    batches = [queue.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(30)
    assert all(batch == sorted(batch) for batch in batches)
    merged = batches[0] + batches[1]
    assert len(set(merged)) == len(merged) == 60000


def test_validation():
    assert not is_valid_reqid("0df961e1f3260000")
    assert not is_valid_reqid("0DF961E1F326000")
    assert not is_valid_reqid("0DF961E1F326000G")
    assert not is_valid_reqid(None)


def test_caller_reqid_is_kept_and_bad_ones_replaced(client):
    kept = client.get("/kinds/stat_only", headers={"x-reqid": "00000000DEADBEEF"})
    assert kept.headers["x-reqid"] == "00000000DEADBEEF"
    lowered = client.get("/kinds/stat_only", headers={"x-reqid": "00000000deadbeef"})
    assert lowered.headers["x-reqid"] == "00000000DEADBEEF"
    replaced = client.get("/kinds/stat_only", headers={"x-reqid": "x; drop table"})
    assert is_valid_reqid(replaced.headers["x-reqid"])
