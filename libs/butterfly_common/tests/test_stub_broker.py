"""The StubBroker gives a handler's messages the outcome the Redis broker and a real
consumer give them (status, result, error, attempts), without Redis or threads."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from butterfly_common import mq
from butterfly_common.consumer import Consumer
from butterfly_common.mq import DELAYED, FAILED, FINISHED, QUEUED, Broker, Message, NoConsumer
from butterfly_common.mq import client as mq_client
from butterfly_common.mq.errors import InvalidTopic
from butterfly_common.redis_client import make_redis
from butterfly_common.runtime import build_runtime
from butterfly_common.serve import prepare
from butterfly_common.service import Service
from butterfly_common.settings import load_settings
from butterfly_common.testing import RedisServer, wait_until
from butterfly_common.testing.stub_broker import StubBroker

TASKS = Service(name="tasks", port=18004, handlers="stub_handlers")
REQID = "00000000CAFEF00D"


def settings_for(tmp_path: Path, redis_url: str = "redis://127.0.0.1:1/0") -> Any:
    return load_settings({"BUTTERFLY_REDIS_URL": redis_url,
                          "BUTTERFLY_LOG_DIR": str(tmp_path / "log"),
                          "BUTTERFLY_DATA_DIR": str(tmp_path / "data")})


def on_redis(tmp_path: Path, redis_url: str, topic: str, data: dict[str, Any],
             **options: Any) -> Message:
    """``data`` published on Redis and run by a real consumer (threads and all)."""
    settings = settings_for(tmp_path, redis_url)
    prepare(TASKS, settings)
    rt = build_runtime(TASKS, settings)
    broker = Broker(make_redis(redis_url), lease=1.0, min_backoff=0.02, max_backoff=0.05)
    consumer = Consumer("tasks", rt.routes, rt.gateway, broker, threads=2,
                        max_idle=0.02).start()
    try:
        msg_id = broker.publish(topic, data, reqid=REQID, **options).msg_id
        return wait_until(lambda: (m := broker.get(msg_id, topic)) is not None
                          and m.status in (FINISHED, FAILED) and m, 20, what="an outcome")
    finally:
        consumer.stop()


def on_stub(tmp_path: Path, topic: str, data: dict[str, Any], **options: Any) -> Message:
    stub = StubBroker.for_service(TASKS, settings_for(tmp_path))
    msg_id = stub.publish(topic, data, reqid=REQID, **options).msg_id
    stub.join()
    message = stub.get(msg_id, topic)
    assert message is not None
    return message


def outcome(message: Message) -> tuple[Any, ...]:
    return (message.status, message.result, message.attempts, message.worker != "",
            message.error.splitlines()[:1], message.error_kind, message.progress,
            message.reqid)


CASES = {
    "answered": ("/tasks/greet", {"name": "ada"}, {}),
    "refused": ("/tasks/nope", {"what": "pony"}, {}),
    "raised": ("/tasks/boom", {}, {}),
    "raised, retried, dead": ("/tasks/boom", {}, {"max_retries": 2}),
    "bad parameters": ("/tasks/greet", {"nom": "ada"}, {"max_retries": 3}),
    "retried until it answers": ("/tasks/flaky", {"failures": 2}, {"max_retries": 3}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_the_stub_gives_the_outcome_redis_gives(case, tmp_path, redis_server: RedisServer):
    topic, data, options = CASES[case]
    if topic == "/tasks/flaky":  # each side counts its own calls
        stub_data, redis_data = ({**data, "key": uuid.uuid4().hex} for _ in range(2))
    else:
        stub_data = redis_data = data
    stubbed = on_stub(tmp_path / "stub", topic, stub_data, **options)
    real = on_redis(tmp_path / "redis", redis_server.url, topic, redis_data, **options)
    assert outcome(stubbed) == outcome(real)
    assert stubbed.status in (FINISHED, FAILED)


def test_the_outcomes_are_those_of_a_service(tmp_path):
    stub = StubBroker.for_service(TASKS, settings_for(tmp_path))
    ids = {name: stub.publish(topic, data, **options).msg_id
           for name, (topic, data, options) in CASES.items() if name != "retried until it answers"}
    assert stub.process() == 5  # first attempts; the retries wait for their time
    assert stub.get(ids["raised, retried, dead"]).status == DELAYED
    assert stub.join() == 2
    answered, refused, raised, dead, bad = (stub.get(ids[name]) for name in
                                            ("answered", "refused", "raised",
                                             "raised, retried, dead", "bad parameters"))
    assert answered.status == FINISHED and answered.result == {
        "stat": "OK", "greeting": "hello, ada", "method": "QUEUE",
        "reqid": answered.result["reqid"]}
    assert refused.status == FINISHED and refused.result == {"stat": "ERR_NO_SUCH_THING",
                                                             "what": "pony"}
    assert raised.status == FAILED and raised.attempts == 1
    assert "RuntimeError: the handler blew up" in raised.error
    assert dead.status == FAILED and dead.attempts == 3
    assert bad.status == FAILED and bad.attempts == 1 and "name" in bad.error
    assert (raised.error_kind, dead.error_kind, bad.error_kind) == (
        "exception", "exception", "refused")
    assert answered.error_kind is None and refused.error_kind is None
    assert stub.counts("/tasks/boom") == {"queued": 0, "delayed": 0, "started": 0,
                                          "finished": 0, "failed": 2}


def test_publish_keeps_the_brokers_rules(tmp_path):
    stub = StubBroker.for_service(TASKS, settings_for(tmp_path))
    with pytest.raises(NoConsumer):
        stub.publish("/elsewhere/work", {"a": 1})
    with pytest.raises(InvalidTopic):
        stub.publish("/tasks/{greet}", {"name": "x"})
    with pytest.raises(TypeError):
        stub.publish("/tasks/greet", ["not", "a", "dict"])  # type: ignore[arg-type]
    first = stub.publish("/tasks/greet", {"name": "a"}, msg_id="order-1")
    again = stub.publish("/tasks/greet", {"name": "b"}, msg_id="order-1")
    assert (first.created, again.created, again.status) == (True, False, QUEUED)
    other = stub.publish("/tasks/nope", {}, msg_id="order-1")  # ids are per topic
    assert other.created
    forced = stub.publish("/elsewhere/work", {"a": 1}, force=True).msg_id
    assert stub.queued() == {"/elsewhere/work": [forced], "/tasks/greet": ["order-1"],
                             "/tasks/nope": ["order-1"]}
    assert stub.join() == 2
    assert stub.get("order-1", "/tasks/greet").result["greeting"] == "hello, a"
    assert stub.queued() == {"/elsewhere/work": [forced]}  # nobody serves it


def test_delayed_messages_wait_for_join(tmp_path):
    stub = StubBroker.for_service(TASKS, settings_for(tmp_path))
    later = stub.publish("/tasks/greet", {"name": "later"}, delay=3600).msg_id
    now = stub.publish("/tasks/greet", {"name": "now"}).msg_id
    assert stub.queued("/tasks/greet") == {"/tasks/greet": [now, later]}
    assert stub.process() == 1
    assert stub.get(later).status == DELAYED
    assert stub.join() == 1
    assert stub.get(later).status == FINISHED and stub.queued() == {}


def test_completion_notices_reach_the_notify_topic(tmp_path):
    stub = StubBroker.for_service(TASKS, settings_for(tmp_path))
    msg_id = stub.publish("/tasks/nope", {}, notify="/caller/notices").msg_id
    stub.join()
    [notice] = stub.messages("/caller/notices")
    assert notice.status == QUEUED and notice.data == {
        "msg_id": msg_id, "topic": "/tasks/nope", "status": "finished",
        "stat": "ERR_NO_SUCH_THING", "cost": notice.data["cost"]}


def test_a_result_that_is_no_json_is_refused_as_on_redis(tmp_path):
    stub = StubBroker.for_service(TASKS, settings_for(tmp_path))
    msg_id = stub.publish("/tasks/greet", {"name": "x"}).msg_id
    [claimed] = stub.claim("/tasks/greet", "w-test")
    with pytest.raises(TypeError):  # the consumer then fails it: "could not be stored"
        stub.complete(claimed, {"bad": {1, 2}})
    assert stub.get(msg_id).status == "started"  # nothing recorded
    assert stub.complete(claimed, {"stat": "OK"}) and not stub.complete(claimed, {})


def test_the_plugin_fixture_routes_mq_publish_to_the_stub(stub_broker, tmp_path):
    stub = stub_broker(TASKS)
    msg_id = stub.publish("/tasks/chain", {"name": "next"}).msg_id
    assert stub.join() == 2  # the chained message ran too
    follow_up = stub.get(msg_id).result["next"]
    assert stub.get(follow_up).result["greeting"] == "hello, next"
    assert mq.get(follow_up) == stub.get(follow_up)
    assert mq.wait(follow_up, timeout=1).status == FINISHED


def test_the_stub_claims_by_priority_as_redis_does(tmp_path):
    stub = StubBroker.for_service(TASKS, settings_for(tmp_path))
    plan = [("a", 0), ("b", 0), ("c", 5), ("d", 5), ("e", -5), ("f", 100), ("g", 5)]
    ids = {stub.publish("/tasks/greet", {"name": n}, priority=p).msg_id: n for n, p in plan}
    front = stub.publish("/tasks/greet", {"name": "h"}, priority=5, at_front=True).msg_id
    ids[front] = "h"
    order = [ids[m.id] for m in stub.claim("/tasks/greet", "w", 3)]
    order += [ids[m.id] for m in stub.claim("/tasks/greet", "w", 10)]
    assert order == ["f", "h", "c", "d", "g", "a", "b", "e"]
    with pytest.raises(ValueError, match="priority"):
        stub.publish("/tasks/greet", {"name": "x"}, priority=101)


def test_the_stub_deduplicates_as_redis_does(tmp_path):
    stub = StubBroker.for_service(TASKS, settings_for(tmp_path))
    first = stub.publish("/tasks/greet", {"name": "a"}, dedup_key="k")
    again = stub.publish("/tasks/greet", {"name": "b"}, dedup_key="k")
    assert first.dedup == {"outcome": "new", "msg_id": first.msg_id}
    assert again.dedup == {"outcome": "duplicate", "msg_id": first.msg_id}
    assert (again.msg_id, again.created) == (first.msg_id, False)
    assert stub.join() == 1
    assert stub.publish("/tasks/greet", {"name": "c"}, dedup_key="k").dedup["outcome"] == "new"
    opts = {"dedup_key": "d", "dedup_mode": "debounce", "dedup_ttl": 60.0}
    one = stub.publish("/tasks/greet", {"name": "one"}, **opts)
    two = stub.publish("/tasks/greet", {"name": "two"}, **opts)
    assert two.dedup == {"outcome": "replaced", "msg_id": two.msg_id, "replaced": one.msg_id}
    assert stub.get(one.msg_id) is None
    t1 = stub.publish("/tasks/greet", {"name": "t"}, dedup_key="t", dedup_mode="throttle",
                      dedup_ttl=60.0)
    t2 = stub.publish("/tasks/greet", {"name": "t"}, dedup_key="t", dedup_mode="throttle",
                      dedup_ttl=60.0)
    assert t2.dedup == {"outcome": "throttled", "msg_id": t1.msg_id}
    with pytest.raises(ValueError, match="dedup_mode"):
        stub.publish("/tasks/greet", {"name": "x"}, dedup_key="k", dedup_mode="sometimes")


def test_the_stub_publishes_many_as_redis_does(tmp_path):
    stub = StubBroker.for_service(TASKS, settings_for(tmp_path))
    results = stub.publish_many([{"topic": "/tasks/greet", "data": {"name": "a"}},
                                 {"topic": "/elsewhere/work", "data": {}},
                                 {"topic": "/tasks/greet", "data": {"name": "b"},
                                  "msg_id": "x"},
                                 {"topic": "/tasks/greet", "data": {"name": "c"},
                                  "msg_id": "x"}])
    assert [(r.created, r.status) for r in results] == [
        (True, QUEUED), (False, "no_consumer"), (True, QUEUED), (False, QUEUED)]
    assert stub.join() == 2
    with pytest.raises(ValueError, match="priority"):
        stub.publish_many([{"topic": "/tasks/greet", "data": {}, "priority": 1000}])
    with mq_client.stand_in(stub):
        (one,) = mq.publish_many([{"topic": "/tasks/greet", "data": {"name": "d"}}])
    assert stub.get(one.msg_id).status == QUEUED
