"""Progress of a queued call: ``req.progress(done, total, note)`` lands in the message's
record, fenced by the claim, cleared by a new claim, clamped, and a no-op over HTTP."""

from __future__ import annotations

import uuid

import pytest

from butterfly_common import Request
from butterfly_common.consumer import Consumer
from butterfly_common.discovery import discover
from butterfly_common.gateway import Gateway
from butterfly_common.logs import configure_logging
from butterfly_common.mq import FINISHED, Broker
from butterfly_common.mq.progress import MAX_NOTE, normalize
from butterfly_common.protocol import ProtocolSettings
from butterfly_common.redis_client import make_redis
from butterfly_common.runtime import configure, get_redis
from butterfly_common.settings import load_settings
from butterfly_common.testing import wait_until

from fixtures_app import SAMPLE


@pytest.fixture
def broker(redis_url, tmp_path):
    settings = load_settings({"BUTTERFLY_REDIS_URL": redis_url,
                              "BUTTERFLY_LOG_DIR": str(tmp_path / "log"),
                              "BUTTERFLY_DATA_DIR": str(tmp_path / "data")})
    configure(settings)
    configure_logging(settings, "sample")
    return Broker(make_redis(redis_url), lease=5.0)


@pytest.fixture
def consumer(broker, tmp_path):
    settings = load_settings({"BUTTERFLY_DATA_DIR": str(tmp_path / "data")})
    running = Consumer("sample", discover(SAMPLE.handlers),
                       Gateway(ProtocolSettings(), settings.data_dir), broker,
                       threads=2, max_idle=0.05).start()
    yield running
    running.stop()


def _progress_at(broker: Broker, msg_id: str, done: int):
    msg = broker.get(msg_id)
    return msg if msg and msg.progress and msg.progress["done"] == done else None


def test_queued_handler_reports_each_step_into_the_record(broker, consumer):
    gate = uuid.uuid4().hex
    msg_id = broker.publish("/jobs/stepped", {"steps": 3, "gate": gate}).msg_id
    for done in range(3):
        msg = wait_until(lambda d=done: _progress_at(broker, msg_id, d), 10,
                         what=f"progress {done}/3")
        assert msg.status == "started"
        assert msg.progress == {"done": done, "total": 3,
                                "note": f"step {done + 1} of {3}"}  # newline flattened
        assert msg.to_dict()["progress"] == msg.progress
        get_redis().incr(f"bf:test:gate:{gate}")
    msg = wait_until(lambda: (m := broker.get(msg_id)) and m.status == FINISHED and m, 10,
                     what="the job finished")
    assert msg.progress == {"done": 3, "total": 3, "note": "done"}
    assert msg.result["stored"] == [True, True, True, True]
    assert msg.result["method"] == "QUEUE"


def test_progress_is_fenced_and_a_new_claim_clears_it(broker):
    topic = f"/p{uuid.uuid4().hex[:8]}/job"
    msg_id = broker.publish(topic, {}, force=True).msg_id
    assert broker.get(msg_id).progress is None
    (first,) = broker.claim(topic, "w1", 1)
    assert broker.progress(first, 2, 5, "half way") is True
    assert broker.get(msg_id).progress == {"done": 2, "total": 5, "note": "half way"}
    # the lease is given back (as a reaped or released message): the old token is fenced
    assert broker.release([first]) == 1
    assert broker.progress(first, 4, 5) is False
    assert broker.get(msg_id).progress == {"done": 2, "total": 5, "note": "half way"}
    (second,) = broker.claim(topic, "w2", 1)
    assert second.progress is None and broker.get(msg_id).progress is None
    assert broker.progress(second, 1, 5) is True
    assert broker.complete(second, {"stat": "OK"}) is True
    assert broker.progress(second, 5, 5) is False  # ended: the record stays as it was
    assert broker.get(msg_id).progress == {"done": 1, "total": 5, "note": ""}


def test_progress_values_are_clamped(broker):
    assert normalize(7, 5) == {"done": 5, "total": 5, "note": ""}
    assert normalize(-3, -1) == {"done": 0, "total": 0, "note": ""}
    assert normalize(1, 2**80)["total"] == 2**53 - 1
    note = normalize(0, 1, "a\tb\x00c\ud800" + "x" * 1000)["note"]
    assert note.startswith("a b c?") and len(note) == MAX_NOTE and note.isprintable()
    for bad in ("3", 1.5, None, True):
        with pytest.raises(TypeError):
            normalize(bad, 10)
    topic = f"/p{uuid.uuid4().hex[:8]}/job"
    msg_id = broker.publish(topic, {}, force=True).msg_id
    (msg,) = broker.claim(topic, "w1", 1)
    assert broker.progress(msg, 9, 4, "é" * 500) is True
    stored = broker.get(msg_id).progress
    assert stored == {"done": 4, "total": 4, "note": "é" * MAX_NOTE}


def test_progress_outside_the_queue_does_nothing(client):
    req = Request("0123456789ABCDEF")
    assert req.progress(1, 2, "note") is False
    with pytest.raises(TypeError):
        req.progress("1", 2)
    body = client.get("/jobs/stepped?steps=0&gate=x").get_json()
    assert body["stat"] == "OK" and body["stored"] == [False]
    assert body["method"] == "GET"


def test_an_unreadable_stored_progress_reads_as_none(broker):
    topic = f"/p{uuid.uuid4().hex[:8]}/job"
    msg_id = broker.publish(topic, {}, force=True).msg_id
    key = broker.keys(topic).msg(msg_id)
    for junk in ("{not json", "[1, 2]", '{"done": "x", "total": 3}', "[" * 5000):
        broker.client.hset(key, "progress", junk)
        assert broker.get(msg_id, topic).progress is None, junk
    broker.client.hset(key, "progress", '{"done": 12, "total": 10, "note": "a\\nb"}')
    assert broker.get(msg_id, topic).progress == {"done": 10, "total": 10, "note": "a b"}
