"""The queue client: one broker per process, one wait loop, one topic check."""

from __future__ import annotations

import threading
import time

import pytest

from butterfly_common import mq, runtime
from butterfly_common.mq import FINISHED, QUEUED
from butterfly_common.settings import load_settings


@pytest.fixture
def configured(redis_server, tmp_path):
    runtime.configure(load_settings({"BUTTERFLY_REDIS_URL": redis_server.url,
                                     "BUTTERFLY_MQ_LEASE": "7",
                                     "BUTTERFLY_DATA_DIR": str(tmp_path)}))
    broker = mq.broker()
    broker.heartbeat("w-client", ["/client/topic"], {})
    return broker


@pytest.mark.parametrize(("topic", "ok"), [
    ("/demo_api/hello", True), ("/demo_api/hello/", True), ("/a/b", True),
    ("demo_api/hello", False), ("/a", False), ("/a/b/c", False), ("/a b/c", False),
    ("/a{b}/c", False), ("/a-b/c", False), ("/1a/b", False), ("/é/b", False), ("", False),
    (None, False), ("/a/" + "x" * 300, False)])
def test_valid_topic(topic, ok):
    assert mq.valid_topic(topic) is ok
    assert (mq.topic_problem(topic) is None) is ok


def test_one_broker_per_client(configured, redis_server, tmp_path):
    assert mq.broker() is configured and configured.lease == 7.0
    runtime.configure(load_settings({"BUTTERFLY_REDIS_URL": redis_server.url,
                                     "BUTTERFLY_DATA_DIR": str(tmp_path)}))
    assert mq.broker() is not configured  # a new client: a new broker over it
    assert mq.broker() is mq.broker()


def test_wait_get_and_get_many(configured):
    broker = configured
    first = mq.publish("/client/topic", {"n": 1}).msg_id
    second = mq.publish("/client/topic", {"n": 2}).msg_id
    assert mq.wait("0" * 24, 1) is None
    started = time.monotonic()
    still = mq.wait(first, 0.2)
    assert still is not None and still.status == QUEUED
    assert 0.2 <= time.monotonic() - started < 1.5

    def finish() -> None:
        time.sleep(0.15)
        for msg in broker.claim("/client/topic", "w-client", 2):
            broker.complete(msg, {"stat": "OK", "n": msg.data["n"]})

    worker = threading.Thread(target=finish)
    worker.start()
    done = mq.wait(first, 5, topic="/client/topic")
    worker.join()
    assert done is not None and done.status == FINISHED and done.result["n"] == 1
    many = mq.get_many([second, "0" * 24, first])
    assert [m.id if m else None for m in many] == [second, None, first]
    assert mq.get(second, "/client/topic").result == {"stat": "OK", "n": 2}
