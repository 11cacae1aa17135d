"""publish and msg: the happy path, idempotent ids, and every refusal of publish."""

from __future__ import annotations

import json
import re

import pytest
from baichuan_helpers import TOPIC, refused

from butterfly_common.mq.keys import TopicKeys


def test_publish_returns_id_and_msg_shows_record(client, served):
    served()
    response = client.post("/baichuan/publish", json={"topic": TOPIC,
                                                      "data": {"str_info": "hi"}})
    assert response.status_code == 200
    body = response.get_json()
    assert response.data.startswith(b'{"stat": "OK", ')
    assert re.fullmatch(r"[0-9A-F]{24}", body["msg_id"])
    assert body["created"] is True and body["status"] == "queued"

    record = client.get("/baichuan/msg", query_string={"msg_id": body["msg_id"]}).get_json()
    assert record["stat"] == "OK"
    assert record["id"] == body["msg_id"] and record["topic"] == TOPIC
    assert record["data"] == {"str_info": "hi"} and record["status"] == "queued"
    assert record["attempts"] == 0 and record["result"] is None
    assert "token" not in record
    # the publisher's request id follows the message into the consumer
    assert record["reqid"] == response.headers["x-reqid"]


def test_caller_reqid_is_kept_on_the_message(client, served, broker):
    served()
    reqid = "0123456789ABCDEF"
    body = client.post("/baichuan/publish", json={"topic": TOPIC, "data": {}},
                       headers={"x-reqid": reqid}).get_json()
    assert broker.get(body["msg_id"]).reqid == reqid


def test_publish_from_query_string_and_options(client, served, broker):
    served()
    body = client.get("/baichuan/publish", query_string={
        "topic": TOPIC, "data": json.dumps({"str_info": "q"}), "delay": "30",
        "max_retries": "2", "timeout": "5", "result_ttl": "60", "failure_ttl": "120"}
    ).get_json()
    assert body["stat"] == "OK" and body["status"] == "delayed"
    msg = broker.get(body["msg_id"])
    assert (msg.max_retries, msg.timeout, msg.result_ttl, msg.failure_ttl) == (2, 5, 60, 120)


def test_at_front_goes_first(client, served, broker):
    served()
    first = client.post("/baichuan/publish", json={"topic": TOPIC, "data": {"n": 1}})
    front = client.post("/baichuan/publish", json={"topic": TOPIC, "data": {"n": 2},
                                                   "at_front": True})
    claimed = broker.claim(TOPIC, "w1", 2)
    assert [m.id for m in claimed] == [front.get_json()["msg_id"],
                                       first.get_json()["msg_id"]]


def test_same_msg_id_is_idempotent(client, served, broker):
    served()
    args = {"topic": TOPIC, "data": {"n": 1}, "msg_id": "order-42"}
    first = client.post("/baichuan/publish", json=args).get_json()
    again = client.post("/baichuan/publish", json=args).get_json()
    assert first == {"stat": "OK", "msg_id": "order-42", "created": True, "status": "queued"}
    assert again == {"stat": "OK", "msg_id": "order-42", "created": False,
                     "status": "queued"}
    assert broker.counts(TOPIC)["queued"] == 1


def test_msg_id_is_unique_per_topic(client, served):
    """Issue 12, defect 7: the id belongs to its topic (no global reservation that a
    down shard could block); lookup by id alone names the latest, ``topic`` each one."""
    served(TOPIC, "/demo_api/ping")
    client.post("/baichuan/publish", json={"topic": TOPIC, "data": {"n": 1}, "msg_id": "dup"})
    response = client.post("/baichuan/publish", json={"topic": "/demo_api/ping",
                                                      "data": {"n": 2}, "msg_id": "dup"})
    assert response.status_code == 200 and response.get_json()["created"] is True
    assert client.get("/baichuan/msg?msg_id=dup").get_json()["topic"] == "/demo_api/ping"
    mine = client.get("/baichuan/msg", query_string={"msg_id": "dup", "topic": TOPIC})
    assert mine.get_json()["data"] == {"n": 1}


def test_no_live_consumer_is_refused_unless_forced(client, broker):
    response = client.post("/baichuan/publish", json={"topic": TOPIC, "data": {}})
    refused(response, 409, "ERR_NO_CONSUMER", TOPIC, "force")
    assert broker.counts(TOPIC)["queued"] == 0
    forced = client.post("/baichuan/publish", json={"topic": TOPIC, "data": {}, "force": True})
    assert forced.status_code == 200 and forced.get_json()["created"] is True
    assert broker.counts(TOPIC)["queued"] == 1
    assert TOPIC in broker.topics()


def test_stale_consumer_does_not_count(client, redis, served):
    served()
    # the consumer's last heartbeat moved far into the past: it is dead, not serving
    redis.zadd(TopicKeys.of(TOPIC).workers, {"w1": 1})
    response = client.post("/baichuan/publish", json={"topic": TOPIC, "data": {}})
    refused(response, 409, "ERR_NO_CONSUMER", TOPIC)


@pytest.mark.parametrize("topic", ["demo_api/hello", "/a{b}", "/a b", "/tab\there",
                                   "/" + "x" * 300])
def test_invalid_topic_names(client, topic):
    response = client.post("/baichuan/publish", json={"topic": topic, "data": {},
                                                      "force": True})
    refused(response, 400, "ERR_BAD_TOPIC", "topic")


@pytest.mark.parametrize("data", [[1, 2], "text", 5, None, True, "[1]"])
def test_data_must_be_an_object(client, served, data):
    served()
    response = client.post("/baichuan/publish", json={"topic": TOPIC, "data": data})
    refused(response, 400, "ERR_BAD_PARAMS", "data")


def test_missing_and_unknown_params(client):
    refused(client.post("/baichuan/publish", json={"topic": TOPIC}), 400, "ERR_BAD_PARAMS",
            "missing", "data")
    refused(client.post("/baichuan/publish", json={"topic": TOPIC, "data": {}, "ttl": 5}),
            400, "ERR_BAD_PARAMS", "unknown", "ttl")
    refused(client.post("/baichuan/publish", data="not json",
                        headers={"Content-Type": "application/json"}),
            400, "ERR_BAD_PARAMS", "JSON")


def test_message_size_limit(app_for, served, broker):
    client = app_for(BAICHUAN_MAX_MESSAGE_BYTES="100")
    served()
    ok = client.post("/baichuan/publish", json={"topic": TOPIC, "data": {"s": "x" * 80}})
    assert ok.status_code == 200
    response = client.post("/baichuan/publish", json={"topic": TOPIC,
                                                      "data": {"s": "x" * 200}})
    refused(response, 413, "ERR_MSG_TOO_LARGE", "100", "BAICHUAN_MAX_MESSAGE_BYTES")
    assert broker.counts(TOPIC)["queued"] == 1


def test_default_size_limit_is_256_kib(client, served):
    served()
    big = {"s": "x" * (256 * 1024)}
    refused(client.post("/baichuan/publish", json={"topic": TOPIC, "data": big}),
            413, "ERR_MSG_TOO_LARGE", "262144")


@pytest.mark.parametrize(("field", "value"), [
    ("delay", -1), ("timeout", 0), ("timeout", -5), ("result_ttl", -1),
    ("failure_ttl", -0.5), ("max_retries", -1), ("delay", "nan"), ("timeout", "inf"),
    ("result_ttl", 1e30), ("max_retries", 10**6), ("delay", "soon"), ("at_front", "maybe"),
])
def test_bad_options(client, served, field, value):
    served()
    response = client.post("/baichuan/publish", json={"topic": TOPIC, "data": {},
                                                      field: value})
    refused(response, 400, "ERR_BAD_PARAMS", field)


@pytest.mark.parametrize("msg_id", ["has space", "", "x" * 300, "bell\x07"])
def test_bad_msg_ids(client, served, msg_id):
    served()
    response = client.post("/baichuan/publish", json={"topic": TOPIC, "data": {},
                                                      "msg_id": msg_id})
    refused(response, 400, "ERR_BAD_PARAMS", "msg_id")


def test_msg_not_found_and_finished_record(client, served, broker):
    refused(client.get("/baichuan/msg?msg_id=nope"), 404, "ERR_MSG_NOT_FOUND", "nope")
    refused(client.get("/baichuan/msg"), 400, "ERR_BAD_PARAMS", "msg_id")
    served()
    msg_id = client.post("/baichuan/publish", json={"topic": TOPIC,
                                                    "data": {"str_info": "hi"}}
                         ).get_json()["msg_id"]
    [claimed] = broker.claim(TOPIC, "worker-7")
    assert broker.complete(claimed, {"stat": "OK", "str_info": "hi"}, cost=0.012)
    record = client.get("/baichuan/msg", query_string={"msg_id": msg_id,
                                                       "topic": TOPIC}).get_json()
    assert record["status"] == "finished"
    assert record["result"] == {"stat": "OK", "str_info": "hi"}
    assert record["worker"] == "worker-7" and record["attempts"] == 1
    assert record["cost"] == pytest.approx(0.012)
    assert record["created_at"] <= record["started_at"] <= record["ended_at"]


def test_routes_are_not_queue_topics(client):
    state = client.application
    assert sorted(state.routes) == [f"/baichuan/{n}" for n in (
        "batch", "batch_cancel", "batches", "bulk", "delete", "msg", "msgs", "publish",
        "publish_batch", "publish_many", "purge", "requeue", "set_topic_limits",
        "topic_limits", "topics", "wait", "workers")]
    assert not any(route.is_topic for route in state.routes.values())


def test_openapi_documents_the_api(client):
    spec = client.get("/openapi.json").get_json()
    assert {"/baichuan/publish", "/baichuan/wait", "/baichuan/purge"} <= set(spec["paths"])
    assert "idempotent" in json.dumps(spec["paths"]["/baichuan/publish"])


def test_publish_with_notify_stores_the_notice_topic(client, served, broker):
    served()
    body = client.post("/baichuan/publish", json={
        "topic": TOPIC, "data": {"str_info": "n"}, "notify": "/xingqiao/task_notice"}
    ).get_json()
    assert body["stat"] == "OK"
    assert broker.get(body["msg_id"]).notify == "/xingqiao/task_notice"
    record = client.get("/baichuan/msg", query_string={"msg_id": body["msg_id"]}).get_json()
    assert record["notify"] == "/xingqiao/task_notice"
    bad = client.post("/baichuan/publish", json={"topic": TOPIC, "data": {},
                                                 "notify": "no-slash"})
    assert bad.status_code == 400 and bad.get_json()["stat"] == "ERR_BAD_TOPIC"
