"""``priority`` on the HTTP publish: stored, shown by ``msg`` and ``msgs``, obeyed by
claims, refused clearly when out of range or not an integer."""

from __future__ import annotations

import json

import pytest
from baichuan_helpers import TOPIC, refused


def publish(client, **args):
    body = client.post("/baichuan/publish", json={"topic": TOPIC, "data": {}, **args})
    assert body.status_code == 200, body.get_data(as_text=True)
    return body.get_json()["msg_id"]


def test_priority_orders_claims_and_shows_in_msg_and_msgs(client, served, broker):
    served()
    low = publish(client, priority=-3)
    plain = publish(client)
    high = publish(client, priority=42)
    front = publish(client, priority=42, at_front=True)
    record = client.get("/baichuan/msg", query_string={"msg_id": high}).get_json()
    assert record["priority"] == 42
    assert client.get("/baichuan/msg", query_string={"msg_id": plain}).get_json()[
        "priority"] == 0
    page = client.get("/baichuan/msgs", query_string={"topic": TOPIC, "order": "oldest"}
                      ).get_json()["data"]
    assert page["total"] == 4
    assert [(m["id"], m["priority"]) for m in page["list"]] == [
        (front, 42), (high, 42), (plain, 0), (low, -3)]
    assert [m.id for m in broker.claim(TOPIC, "w1", 10)] == [front, high, plain, low]


def test_priority_from_the_query_string(client, served, broker):
    served()
    body = client.get("/baichuan/publish", query_string={
        "topic": TOPIC, "data": json.dumps({}), "priority": "-100"}).get_json()
    assert body["stat"] == "OK"
    assert broker.get(body["msg_id"]).priority == -100


@pytest.mark.parametrize("value", [101, -101, 1.5, "high", True, 10**30, None, [1]])
def test_bad_priority_is_refused(client, served, broker, value):
    served()
    response = client.post("/baichuan/publish", json={"topic": TOPIC, "data": {},
                                                      "priority": value})
    refused(response, 400, "ERR_BAD_PARAMS", "priority")
    assert broker.counts(TOPIC)["queued"] == 0


def test_openapi_documents_priority(client):
    spec = client.get("/openapi.json").get_json()
    assert "priority" in json.dumps(spec["paths"]["/baichuan/publish"])
