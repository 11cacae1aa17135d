"""Group commit: concurrent submits share writes, every item gets its own answer."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from butterfly_common.mq.group_commit import GroupCommit, Interrupted
from butterfly_common.testing import wait_until


def test_every_item_gets_its_own_result_and_batches_form_while_a_write_runs():
    batches: list[int] = []
    gate = threading.Event()

    def write(items):
        batches.append(len(items))
        if len(batches) == 1:
            gate.wait(10)  # hold the first write until the others have queued
        return [i * 2 for i in items]

    group = GroupCommit(write)
    with ThreadPoolExecutor(16) as pool:
        first = pool.submit(group.submit, 0)
        rest = [pool.submit(group.submit, i) for i in range(1, 16)]
        # the 15 others queue behind the held write
        wait_until(lambda: len(group._pending) == 15, 10, what="15 queued")
        gate.set()
        assert first.result(10) == 0
        assert [f.result(10) for f in rest] == [i * 2 for i in range(1, 16)]
    assert batches[0] == 1 and sum(batches) == 16 and len(batches) < 16


def test_a_lone_submit_writes_at_once():
    group = GroupCommit(lambda items: [x + 1 for x in items])
    assert group.submit(41) == 42
    assert not group._writing and not group._pending


def test_a_failed_write_raises_in_every_submitter_and_the_next_write_works():
    calls = []

    def write(items):
        calls.append(list(items))
        if len(calls) == 1:
            raise ConnectionError("down")
        return items

    group = GroupCommit(write)
    with pytest.raises(ConnectionError):
        group.submit("a")
    assert group.submit("b") == "b"


def test_an_interrupted_writer_tells_the_others_to_retry():
    queued = threading.Event()

    class Interrupt(BaseException):
        pass

    def write(items):
        if len(items) == 1 and items[0] == "leader":
            queued.wait(10)
            raise Interrupt()
        return items

    group = GroupCommit(write)
    with ThreadPoolExecutor(2) as pool:
        leader = pool.submit(group.submit, "leader")
        wait_until(lambda: group._writing, 10, what="a write under way")
        other = pool.submit(group.submit, "other")
        wait_until(lambda: group._pending, 10, what="one queued")
        queued.set()
        with pytest.raises(Interrupt):
            leader.result(10)
        # "other" was queued behind the interrupted write: it is written by the next lead
        assert other.result(10) == "other"


def test_batches_are_capped():
    sizes = []
    gate = threading.Event()

    def write(items):
        sizes.append(len(items))
        if len(sizes) == 1:
            gate.wait(10)
        return items

    group = GroupCommit(write, max_batch=4)
    with ThreadPoolExecutor(11) as pool:
        futures = [pool.submit(group.submit, 0)]
        wait_until(lambda: group._writing, 10, what="a write under way")
        futures += [pool.submit(group.submit, i) for i in range(1, 11)]
        wait_until(lambda: len(group._pending) == 10, 10, what="10 queued")
        gate.set()
        assert [f.result(10) for f in futures] == list(range(11))
    assert max(sizes) <= 4 and sum(sizes) == 11


def test_interrupted_is_retryable_runtime_error():
    assert issubclass(Interrupted, RuntimeError)
