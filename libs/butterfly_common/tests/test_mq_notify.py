"""Completion notices: ``publish(..., notify=T)`` makes the consumer tell topic ``T`` once
the message has finished or finally failed, after its result is recorded."""

from __future__ import annotations

import time
import uuid

import pytest

from butterfly_common.consumer import Consumer
from butterfly_common.discovery import discover
from butterfly_common.gateway import Gateway
from butterfly_common.logs import configure_logging
from butterfly_common.mq import FAILED, FINISHED, QUEUED, Broker, InvalidTopic
from butterfly_common.protocol import ProtocolSettings
from butterfly_common.redis_client import make_redis
from butterfly_common.runtime import configure
from butterfly_common.settings import load_settings
from butterfly_common.testing import wait_until

from fixtures_app import SAMPLE


@pytest.fixture
def env(redis_url, tmp_path):
    settings = load_settings({"BUTTERFLY_REDIS_URL": redis_url,
                              "BUTTERFLY_LOG_DIR": str(tmp_path / "log"),
                              "BUTTERFLY_DATA_DIR": str(tmp_path / "data")})
    configure(settings)
    configure_logging(settings, "sample")
    broker = Broker(make_redis(redis_url), lease=1.0, min_backoff=0.05, max_backoff=0.1)
    consumer = Consumer("sample", discover(SAMPLE.handlers),
                        Gateway(ProtocolSettings(), settings.data_dir), broker,
                        threads=2, max_idle=0.05).start()
    # a notice topic nobody consumes: the notices stay queued for the test to read
    notices = f"/n{uuid.uuid4().hex[:10]}/notice"
    yield broker, notices
    consumer.stop()


def ended(broker: Broker, msg_id: str):
    message = broker.get(msg_id)
    return message if message and message.status in (FINISHED, FAILED) else None


def queued_notices(broker: Broker, topic: str) -> list[dict]:
    return [m.data for m in broker.list(topic, QUEUED, page_size=100, newest_first=False)[1]]


def test_publish_stores_the_notify_topic(env):
    broker, notices = env
    done = broker.publish("/jobs/add", {"a": 1, "b": 2}, notify=notices, delay=60)
    assert broker.get(done.msg_id).notify == notices
    assert broker.get(done.msg_id).to_dict()["notify"] == notices
    plain = broker.publish("/jobs/add", {"a": 1, "b": 2}, delay=60)
    assert broker.get(plain.msg_id).notify == ""
    with pytest.raises(InvalidTopic):
        broker.publish("/jobs/add", {"a": 1, "b": 2}, notify="/bad {tag}")


def test_finished_message_sends_one_notice_after_its_result(env):
    broker, notices = env
    done = broker.publish("/jobs/add", {"a": 2, "b": 3}, notify=notices,
                          reqid="00000000CAFEF00D")
    got = wait_until(lambda: queued_notices(broker, notices), 10, what="a notice")
    assert len(got) == 1
    notice = got[0]
    assert set(notice) == {"msg_id", "topic", "status", "stat", "cost"}
    assert notice["msg_id"] == done.msg_id and notice["topic"] == "/jobs/add"
    assert notice["status"] == FINISHED and notice["stat"] == "OK" and notice["cost"] > 0
    # the result was recorded before the notice went out
    assert broker.get(done.msg_id).result["sum"] == 5
    record = broker.list(notices, QUEUED)[1][0]
    assert record.reqid == "00000000CAFEF00D" and record.notify == ""


def test_bad_params_tell_failed_with_the_stat(env):
    broker, notices = env
    done = broker.publish("/jobs/add", {"a": 1}, notify=notices)
    got = wait_until(lambda: queued_notices(broker, notices), 10, what="a notice")
    assert got == [{"msg_id": done.msg_id, "topic": "/jobs/add", "status": FAILED,
                    "stat": "ERR_BAD_PARAMS", "cost": got[0]["cost"]}]


def test_retries_are_not_told_only_the_final_outcome(env):
    broker, notices = env
    key = str(time.time_ns())
    ok = broker.publish("/jobs/flaky", {"key": key, "failures": 2}, max_retries=3,
                        notify=notices)
    wait_until(lambda: ended(broker, ok.msg_id), 15)
    dead = broker.publish("/jobs/flaky", {"key": key + "x", "failures": 9}, max_retries=1,
                          notify=notices)
    wait_until(lambda: ended(broker, dead.msg_id), 15)
    got = wait_until(lambda: len(queued_notices(broker, notices)) >= 2
                     and queued_notices(broker, notices), 10, what="two notices")
    assert [(n["msg_id"], n["status"], n["stat"]) for n in got] == [
        (ok.msg_id, FINISHED, "OK"), (dead.msg_id, FAILED, "ERR_SERVER_EXCEPTION")]
    assert broker.get(ok.msg_id).attempts == 3  # two retries, no notice for them


def test_fenced_out_completion_tells_nothing(env):
    broker, notices = env
    from sample_handlers.jobs import STARTED

    STARTED.clear()
    slow = broker.publish("/jobs/slow", {"seconds": 0.5}, notify=notices)
    wait_until(STARTED.is_set, 10)
    assert broker.delete("/jobs/slow", slow.msg_id)  # the running attempt is fenced
    marker = broker.publish("/jobs/add", {"a": 0, "b": 0}, notify=notices)
    got = wait_until(lambda: queued_notices(broker, notices), 10)
    time.sleep(0.8)  # the slow handler has returned by now; its late result is ignored
    assert [n["msg_id"] for n in queued_notices(broker, notices)] == [marker.msg_id]
    assert got[0]["msg_id"] == marker.msg_id


def test_no_notify_no_notice(env):
    broker, notices = env
    done = broker.publish("/jobs/add", {"a": 1, "b": 1})
    wait_until(lambda: ended(broker, done.msg_id), 10)
    assert broker.counts(notices) == {"queued": 0, "delayed": 0, "started": 0,
                                      "finished": 0, "failed": 0}
