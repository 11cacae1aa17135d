"""``publish_many``: many messages in one call, each checked as ``publish`` checks it
before anything is queued, each idempotent by its id; per-item results in order."""

from __future__ import annotations

import json

import pytest
from baichuan_helpers import TOPIC, refused

OTHER = "/demo_api/other"


def test_publish_many_queues_in_order_with_per_item_options(client, served, broker):
    served(TOPIC)
    body = client.post("/baichuan/publish_many", json={"messages": [
        {"topic": TOPIC, "data": {"n": 0}},
        {"topic": TOPIC, "data": {"n": 1}, "priority": 5, "msg_id": "job-1"},
        {"topic": TOPIC, "data": {"n": 2}, "delay": 60},
        {"topic": TOPIC, "data": {"n": 3}, "dedup_key": "k"},
        {"topic": TOPIC, "data": {"n": 4}, "dedup_key": "k"},
        {"topic": OTHER, "data": {"n": 5}},
    ]})
    assert body.status_code == 200, body.get_data(as_text=True)
    answer = body.get_json()
    assert answer["stat"] == "OK" and answer["created"] == 4
    results = answer["results"]
    assert [(r["created"], r["status"]) for r in results] == [
        (True, "queued"), (True, "queued"), (True, "delayed"), (True, "queued"),
        (False, "queued"), (False, "no_consumer")]
    assert results[1]["msg_id"] == "job-1"
    assert results[4]["dedup"] == {"outcome": "duplicate", "msg_id": results[3]["msg_id"]}
    assert "dedup" not in results[0]
    assert [m.data["n"] for m in broker.claim(TOPIC, "w1", 10)] == [1, 0, 3]
    # idempotent by id on a second call
    again = client.post("/baichuan/publish_many", json={"messages": [
        {"topic": TOPIC, "data": {"n": 9}, "msg_id": "job-1"}]}).get_json()
    assert again["created"] == 0 and again["results"][0]["status"] == "started"
    # force for all
    forced = client.post("/baichuan/publish_many", json={
        "messages": [{"topic": OTHER, "data": {}}], "force": True}).get_json()
    assert forced["created"] == 1


@pytest.mark.parametrize(("messages", "code", "stat", "words"), [
    ([], 400, "ERR_BAD_PARAMS", "messages"),
    ("nope", 400, "ERR_BAD_PARAMS", "messages"),
    ([{"topic": TOPIC, "data": {}}] * 1001, 400, "ERR_BAD_PARAMS", "at most 1000"),
    ([{"topic": TOPIC, "data": {}}, 7], 400, "ERR_BAD_PARAMS", "messages[1]"),
    ([{"topic": TOPIC, "data": {}}, {"topic": TOPIC}], 400, "ERR_BAD_PARAMS",
     "messages[1].data"),
    ([{"topic": TOPIC, "data": {}}, {"data": {}}], 400, "ERR_BAD_PARAMS", "messages[1].topic"),
    ([{"topic": TOPIC, "data": {}, "colour": 1}], 400, "ERR_BAD_PARAMS", "colour"),
    ([{"topic": TOPIC, "data": {}, "priority": 101}], 400, "ERR_BAD_PARAMS",
     "messages[0].priority"),
    ([{"topic": TOPIC, "data": {}, "priority": True}], 400, "ERR_BAD_PARAMS",
     "messages[0].priority"),
    ([{"topic": TOPIC, "data": {}, "delay": "soon"}], 400, "ERR_BAD_PARAMS",
     "messages[0].delay"),
    ([{"topic": TOPIC, "data": {}, "delay": -1}], 400, "ERR_BAD_PARAMS", "messages[0].delay"),
    ([{"topic": TOPIC, "data": {}, "dedup_mode": "throttle"}], 400, "ERR_BAD_PARAMS",
     "messages[0].dedup"),
    ([{"topic": TOPIC, "data": {}}, {"topic": "bad topic", "data": {}}], 400, "ERR_BAD_TOPIC",
     "messages[1]"),
    ([{"topic": TOPIC, "data": {}, "msg_id": "ruqi:x:1"}], 403, "ERR_MSG_ID_RESERVED",
     "messages[0]"),
    ([{"topic": TOPIC, "data": {"s": "x" * 300_000}}], 413, "ERR_MSG_TOO_LARGE",
     "messages[0]"),
])
def test_a_bad_item_refuses_the_whole_call(client, served, broker, messages, code, stat,
                                           words):
    served(TOPIC)
    response = client.post("/baichuan/publish_many", json={"messages": messages})
    refused(response, code, stat, words)
    assert broker.counts(TOPIC)["queued"] == 0


def test_openapi_documents_publish_many(client):
    spec = client.get("/openapi.json").get_json()
    assert "messages" in json.dumps(spec["paths"]["/baichuan/publish_many"])
