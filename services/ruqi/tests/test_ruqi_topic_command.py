"""Topic commands against the real queue (butterfly_common.mq) on a private redis-server."""

from __future__ import annotations

import threading

import pytest

from butterfly_common import runtime
from butterfly_common.testing import wait_until
from butterfly_ruqi.commands import run_command

mq = pytest.importorskip("butterfly_common.mq")

TOPIC = "/demo_api/hello"


def fire(ms: int, wait: bool = False, timeout: float = 5.0):
    return run_command(f'{TOPIC}#{{"str_info": "tick"}}', script_dir=None, timeout=timeout,
                       reqid="00000000000000AA", job_id="tj", scheduled=ms / 1000,
                       wait_result=wait)


def test_publish_records_msg_id_carries_reqid_and_is_idempotent(sqlite_env):
    broker = mq.Broker(runtime.get_redis())
    broker.heartbeat("fake-consumer", [TOPIC])
    out = fire(1_700_000_000_000)
    assert out.success, out.output
    msg_id = out.output.removeprefix("msg_id=")
    msg = broker.get(msg_id)
    assert msg.data == {"str_info": "tick"} and msg.reqid == "00000000000000AA"
    # the same (job, scheduled time) never queues a second message
    assert fire(1_700_000_000_000).output == out.output
    assert broker.counts(TOPIC)["queued"] == 1


def test_publish_without_consumer_fails_the_fire(sqlite_env):
    out = fire(1_700_000_001_000)
    assert not out.success and "publish failed" in out.output


def test_wait_for_the_handlers_result(sqlite_env):
    broker = mq.Broker(runtime.get_redis())
    broker.heartbeat("fake-consumer", [TOPIC])

    def consume(result: dict) -> None:
        msgs = wait_until(lambda: broker.claim(TOPIC, "fake-consumer"), timeout=5)
        broker.complete(msgs[0], result)

    for ms, result, ok in ((1_700_000_002_000, {"stat": "OK", "str_info": "tick"}, True),
                           (1_700_000_003_000, {"stat": "ERR_BUSY"}, False)):
        worker = threading.Thread(target=consume, args=(result,))
        worker.start()
        out = fire(ms, wait=True)
        worker.join()
        assert out.success is ok, out.output
        assert "status=finished" in out.output


def test_wait_gives_up_at_the_timeout(sqlite_env):
    mq.Broker(runtime.get_redis()).heartbeat("fake-consumer", [TOPIC])
    out = fire(1_700_000_004_000, wait=True, timeout=0.3)
    assert not out.success and "no result" in out.output
