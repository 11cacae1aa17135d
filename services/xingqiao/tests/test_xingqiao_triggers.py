"""Event triggers: each event published to ``/xingqiao/trigger`` starts exactly one flow
(the event its job_extra), the same event id twice or a redelivered message one flow,
also across a SIGKILL of the replica (SQLite and MariaDB); a disabled trigger drops
events; writes need operator, delete admin; bad input 4xx."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from test_xingqiao_api import refused
from test_xingqiao_crash import sigkill
from xq_helpers import TOKEN, XQ, _env, fleet, task_consumer

from butterfly_common.mq import Broker, Message
from butterfly_common.testing import (
    ButterflyService,
    RedisServer,
    child_pids,
    mariadb_database,
    wait_until,
)
from butterfly_xingqiao.client import FlowClient

OPERATOR_TOKEN = "xq-test-operator-token-0123456"
TOPIC = "/xingqiao/trigger"


@pytest.fixture(scope="module")
def xq() -> Iterator[XQ]:
    """The fleet with an operator token and the test client as a trusted proxy (so
    ``X-Username`` without ``X-Role`` is a viewer)."""
    with fleet(BUTTERFLY_OPERATOR_TOKEN=OPERATOR_TOKEN,
               BUTTERFLY_TRUSTED_PROXIES="127.0.0.1/32") as client:
        yield client


def key() -> str:
    return uuid.uuid4().hex[:10]


def setup_trigger(xq: XQ, **kw: Any) -> tuple[str, str]:
    """A JSON flow type saving its ``value`` (counting runs of ``key``) and a trigger."""
    k = key()
    xq.flow_type(f"trg-{k}", [{"label": "a", "cmd": "/xqt/ok", "requires": ["key", "value"],
                               "is_save": True}], extra_required=["key", "value"])
    name = f"orders-{k}"
    xq.ok(xq.post("trigger_create", name=name, job_type=f"trg-{k}", **kw))
    return name, k


def publish(xq: XQ, data: dict[str, Any], **kw: Any) -> str:
    return Broker(xq.redis).publish(TOPIC, data, **kw).msg_id


def settled(xq: XQ, msg_id: str) -> Message:
    """The trigger message once xingqiao answered it."""
    broker = Broker(xq.redis)
    return wait_until(lambda: (m := broker.get(msg_id, TOPIC)) is not None
                      and m.status in ("finished", "failed") and m, 30, interval=0.05,
                      what=f"trigger message {msg_id} answered")


def answer(xq: XQ, msg_id: str) -> dict[str, Any]:
    msg = settled(xq, msg_id)
    assert msg.result is not None, msg
    return msg.result


def flows_of(xq: XQ, name: str) -> list[dict[str, Any]]:
    return xq.ok(xq.get("list_jobs", operator=f"trigger:{name}", page_size=100))["list"]


def trigger_row(xq: XQ, name: str) -> dict[str, Any]:
    rows = xq.ok(xq.get("trigger_list"))["list"]
    return next(r for r in rows if r["name"] == name)


def test_each_event_starts_one_flow_with_the_event_as_extra(xq: XQ):
    name, k = setup_trigger(xq, job_namespace="shop")
    first = answer(xq, publish(xq, {"trigger": name, "event": {"key": k, "value": "o-1"},
                                    "event_id": "o-1"}))
    assert first["stat"] == "OK" and first["data"]["created"] is True, first
    job = xq.wait(first["data"]["job_id"])
    assert job["job_status"] == "finished", job
    assert job["job_extra"] == {"key": k, "value": "o-1"}
    assert job["ret_data"]["value"] == "o-1"
    assert (job["job_namespace"], job["operator"]) == ("shop", f"trigger:{name}")
    # the same event id again (republished under another message id): the same flow
    again = answer(xq, publish(xq, {"trigger": name, "event": {"key": k, "value": "o-1"},
                                    "event_id": "o-1"}))
    assert again["data"] == {**first["data"], "created": False}
    second = answer(xq, publish(xq, {"trigger": name, "event": {"key": k, "value": "o-2"},
                                     "event_id": "o-2"}))
    assert second["data"]["created"] is True
    assert xq.wait(second["data"]["job_id"])["ret_data"]["value"] == "o-2"
    assert len(flows_of(xq, name)) == 2 and xq.runs(k) == 2
    row = trigger_row(xq, name)
    assert (row["fired"], row["dropped"], row["enabled"]) == (2, 0, True)
    assert row["created_by"] == row["updated_by"] == "admin-token"
    assert row["topic"] == TOPIC


def test_a_redelivered_message_starts_one_flow(xq: XQ):
    """At-least-once: the same message (same id, no event_id) delivered again, as after a
    consumer crash between starting the flow and recording the answer, is the same
    event. Its first record expires (result_ttl), then the message is published again
    under its id: a second delivery of it."""
    name, k = setup_trigger(xq)
    msg_id = f"evt-{k}"
    data = {"trigger": name, "event": {"key": k, "value": "v"}}
    first = answer(xq, publish(xq, data, msg_id=msg_id, result_ttl=0.3))
    assert first["data"]["created"] is True and first["data"]["event_id"] == msg_id
    broker = Broker(xq.redis)
    wait_until(lambda: broker.get(msg_id, TOPIC) is None, 10, interval=0.05,
               what="the first record expired")
    result = broker.publish(TOPIC, data, msg_id=msg_id)
    assert result.created is True  # a second delivery, not a duplicate publish
    again = answer(xq, msg_id)
    assert again["data"] == {**first["data"], "created": False}
    assert xq.wait(first["data"]["job_id"])["job_status"] == "finished"
    assert len(flows_of(xq, name)) == 1 and xq.runs(k) == 1
    assert trigger_row(xq, name)["fired"] == 1


def test_the_same_event_published_at_once_starts_one_flow(xq: XQ):
    """20 messages of one event id, claimed together by the replica's runner threads:
    the flow's unique key lets one insert win, the others answer its flow."""
    name, k = setup_trigger(xq)
    data = {"trigger": name, "event": {"key": k, "value": "once"}, "event_id": "e-1"}
    answers = [answer(xq, msg_id) for msg_id in
               [r.msg_id for r in Broker(xq.redis).publish_many(
                   [{"topic": TOPIC, "data": data} for _ in range(20)])]]
    assert {a["stat"] for a in answers} == {"OK"}, answers
    assert len({a["data"]["job_id"] for a in answers}) == 1
    assert sum(a["data"]["created"] for a in answers) == 1
    assert xq.wait(answers[0]["data"]["job_id"])["job_status"] == "finished"
    assert len(flows_of(xq, name)) == 1 and xq.runs(k) == 1


def test_disabled_trigger_drops_events_and_enable_resumes(xq: XQ):
    name, k = setup_trigger(xq)
    row = xq.ok(xq.post("trigger_disable", name=name))
    assert row["enabled"] is False
    dropped = answer(xq, publish(xq, {"trigger": name, "event": {"key": k, "value": "x"}}))
    assert dropped["stat"] == "ERR_TRIGGER_DISABLED", dropped
    assert flows_of(xq, name) == [] and trigger_row(xq, name)["dropped"] == 1
    flows = FlowClient(xq.url, token=TOKEN)  # the Python client says the same
    assert next(t for t in flows.triggers() if t["name"] == name)["dropped"] == 1
    assert flows.enable_trigger(name)["enabled"] is True
    fired = answer(xq, publish(xq, {"trigger": name, "event": {"key": k, "value": "y"}}))
    assert xq.wait(fired["data"]["job_id"])["ret_data"]["value"] == "y"
    assert len(flows_of(xq, name)) == 1 and xq.runs(k) == 1


def test_trigger_refusals(xq: XQ):
    name, k = setup_trigger(xq)
    refused(xq.post("trigger_create", name=name, job_type=f"trg-{k}"), 409,
            "ERR_TRIGGER_EXIST", name)
    refused(xq.post("trigger_create", name=f"n-{k}", job_type="no-such-type"), 404,
            "ERR_JOB_TYPE_NOT_EXISTS", "no-such-type")
    refused(xq.post("trigger_create", name=f"n-{k}", job_type=f"trg-{k}", job_version="7"),
            404, "ERR_JOB_VERSION_NOT_EXIST")
    for bad in ("", "has space", "-lead", "x" * 65, "a/b"):
        refused(xq.post("trigger_create", name=bad, job_type=f"trg-{k}"), 400,
                "ERR_BAD_PARAMS", "name")
    refused(xq.post("trigger_enable", name=f"none-{k}"), 404, "ERR_TRIGGER_NOT_EXIST")
    refused(xq.post("trigger_disable", name=f"none-{k}"), 404, "ERR_TRIGGER_NOT_EXIST")
    refused(xq.post("trigger", trigger=name), 403, "ERR_NOT_FROM_QUEUE", TOPIC)
    # an event of an unknown trigger, or one lacking the type's extra: answered, no flow
    unknown = answer(xq, publish(xq, {"trigger": f"none-{k}", "event": {}}))
    assert unknown["stat"] == "ERR_TRIGGER_NOT_EXIST", unknown
    lacking = answer(xq, publish(xq, {"trigger": name, "event": {"key": k}}))
    assert lacking["stat"] == "ERR_JOB_EXTRA_INVALID", lacking
    bad_id = settled(xq, publish(xq, {"trigger": name, "event": {}, "event_id": ""}))
    assert bad_id.status == "failed" and "event_id" in bad_id.error, bad_id
    assert flows_of(xq, name) == []


def test_trigger_roles_and_delete(xq: XQ):
    name, k = setup_trigger(xq)
    viewer = {"X-Username": "vera"}
    operator = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
    url = f"{xq.url}/xingqiao"
    for route in ("trigger_create", "trigger_enable", "trigger_disable", "trigger_delete"):
        body = {"name": name, "job_type": f"trg-{k}"} if route == "trigger_create" \
            else {"name": name}
        refused(xq.http.post(f"{url}/{route}", json=body, timeout=30), 401,
                "ERR_UNAUTHORIZED")
        refused(xq.http.post(f"{url}/{route}", json=body, headers=viewer, timeout=30), 403,
                "ERR_FORBIDDEN")
    assert trigger_row(xq, name)["enabled"] is True  # nothing changed
    assert xq.http.get(f"{url}/trigger_list", headers=viewer, timeout=30).status_code == 200
    disabled = xq.http.post(f"{url}/trigger_disable", json={"name": name}, headers=operator,
                            timeout=30)
    assert disabled.json()["data"]["updated_by"] == "operator-token", disabled.json()
    refused(xq.http.post(f"{url}/trigger_delete", json={"name": name}, headers=operator,
                         timeout=30), 403, "ERR_FORBIDDEN")  # destructive: admin
    deleted = xq.ok(xq.post("trigger_delete", name=name))
    assert deleted["name"] == name
    made = FlowClient(xq.url, token=OPERATOR_TOKEN).create_trigger(
        f"py-{k}", f"trg-{k}", job_version="1", enabled=False)
    assert (made["job_version"], made["enabled"], made["created_by"]) == (
        "1", False, "operator-token")
    assert all(r["name"] != name for r in xq.ok(xq.get("trigger_list"))["list"])


EVENTS = 150


def claimed_by(broker: Broker, pids: list[int]) -> set[str]:
    """Ids of trigger messages claimed right now by processes ``pids``."""
    marks = {f":{pid}:" for pid in pids}
    return {m.id for m in broker.list(TOPIC, "started", page_size=1000)[1]
            if any(mark in m.worker for mark in marks)}


@pytest.mark.parametrize("database", ["sqlite", "mariadb"])
def test_each_trigger_event_one_flow_under_a_crash(database: str, tmp_path):
    """150 events (deduplicated by their message ids) while the xingqiao replica serving
    them is SIGKILLed with trigger messages claimed, then restarted: the claimed
    messages are redelivered, and every event has exactly one flow, all finished."""
    with contextlib.ExitStack() as stack:
        db_url = (f"sqlite:///{tmp_path / 'xq.db'}" if database == "sqlite"
                  else stack.enter_context(mariadb_database("bf_xq_trg")))
        redis = stack.enter_context(RedisServer())
        stack.enter_context(task_consumer(redis.url))
        env = _env(redis.url, {"BUTTERFLY_CONSUME": "1", "BUTTERFLY_DB_URL": db_url})
        replica = ButterflyService("xingqiao", env).start()
        stack.callback(lambda: replica.stop())
        xq = XQ(replica.url, redis.url)
        name, k = setup_trigger(xq)
        broker = Broker(xq.redis)
        ids = [f"crash-{k}-{i}" for i in range(EVENTS)]
        for i, msg_id in enumerate(ids):
            broker.publish(TOPIC, {"trigger": name, "event": {"key": k, "value": str(i)}},
                           msg_id=msg_id)
        victims = child_pids(replica.proc.pid)
        doomed = wait_until(lambda: claimed_by(broker, victims), 60, interval=0.001,
                            what="the replica holding trigger messages")
        sigkill(replica)
        replica = ButterflyService("xingqiao", env).start()
        xq = XQ(replica.url, redis.url)
        wait_until(lambda: broker.counts(TOPIC)["finished"] == EVENTS, 60, interval=0.1,
                   what="every event answered")
        msgs = [broker.get(msg_id, TOPIC) for msg_id in ids]
        answers = [m.result["data"] for m in msgs if m is not None and m.result]
        assert len(answers) == EVENTS and all(a["event_id"] in ids for a in answers)
        assert len({a["job_id"] for a in answers}) == EVENTS  # one flow per event
        assert xq.ok(xq.get("list_jobs", operator=f"trigger:{name}",
                            page_size=1))["total"] == EVENTS
        wait_until(lambda: xq.ok(xq.get("list_jobs", operator=f"trigger:{name}",
                                        job_status="finished", page_size=1))["total"]
                   == EVENTS, 60, interval=0.2, what="every flow finished")
        redelivered = [m for m in msgs if m is not None and m.attempts > 1]
        again = sum(not m.result["data"]["created"] for m in redelivered if m.result)
        print(f"\ntrigger crash ({database}): {EVENTS} events, {len(doomed)} claimed by the "
              f"killed replica, {len(redelivered)} redelivered ({again} of them had "
              f"started their flow before the kill); {EVENTS} flows")
        assert redelivered, "the kill left no message to redeliver"
        xq.close()  # before the replica stops (see XQ.close)
