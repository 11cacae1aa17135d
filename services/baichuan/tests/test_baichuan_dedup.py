"""``dedup_key`` on the HTTP publish: the answer's ``dedup`` says which message stands and
why; inconsistent options are refused as ERR_BAD_PARAMS naming dedup."""

from __future__ import annotations

import json

import pytest
from baichuan_helpers import TOPIC, refused


def publish(client, **args):
    response = client.post("/baichuan/publish", json={"topic": TOPIC, "data": {}, **args})
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def test_until_done_over_http(client, served, broker):
    served()
    first = publish(client, dedup_key="order-1", data={"n": 1})
    assert first == {"stat": "OK", "msg_id": first["msg_id"], "created": True,
                     "status": "queued",
                     "dedup": {"outcome": "new", "msg_id": first["msg_id"]}}
    again = publish(client, dedup_key="order-1", data={"n": 2})
    assert again == {"stat": "OK", "msg_id": first["msg_id"], "created": False,
                     "status": "queued",
                     "dedup": {"outcome": "duplicate", "msg_id": first["msg_id"]}}
    record = client.get("/baichuan/msg", query_string={"msg_id": first["msg_id"]}).get_json()
    assert (record["dedup_key"], record["dedup_mode"], record["data"]) == (
        "order-1", "until_done", {"n": 1})
    (msg,) = broker.claim(TOPIC, "w1")
    assert broker.complete(msg)
    assert publish(client, dedup_key="order-1")["dedup"]["outcome"] == "new"


def test_throttle_and_debounce_over_http(client, served, broker):
    served()
    t1 = publish(client, dedup_key="t", dedup_mode="throttle", dedup_ttl=60)
    t2 = publish(client, dedup_key="t", dedup_mode="throttle", dedup_ttl=60)
    assert t2["dedup"] == {"outcome": "throttled", "msg_id": t1["msg_id"]}
    assert t2["created"] is False
    d1 = publish(client, dedup_key="d", dedup_mode="debounce", dedup_ttl=60, delay=30)
    d2 = client.get("/baichuan/publish", query_string={
        "topic": TOPIC, "data": json.dumps({"n": 2}), "dedup_key": "d",
        "dedup_mode": "debounce", "dedup_ttl": "60", "delay": "30",
        "dedup_extend": "true"}).get_json()
    assert d2["dedup"] == {"outcome": "replaced", "msg_id": d2["msg_id"],
                           "replaced": d1["msg_id"]}
    assert broker.get(d1["msg_id"]) is None
    assert broker.counts(TOPIC) == {"queued": 1, "delayed": 1, "started": 0, "finished": 0,
                                    "failed": 0}


def test_no_dedup_key_no_dedup_in_the_answer(client, served):
    served()
    assert "dedup" not in publish(client)


@pytest.mark.parametrize("args", [
    {"dedup_mode": "throttle"}, {"dedup_key": "k", "dedup_mode": "sometimes"},
    {"dedup_key": "k", "dedup_mode": "throttle"}, {"dedup_key": "k", "dedup_extend": True},
    {"dedup_key": "has space"}, {"dedup_key": "k", "dedup_ttl": -1},
    {"dedup_key": "k", "dedup_ttl": "nan"}, {"dedup_key": "k", "dedup_ttl": 1e30},
    {"dedup_key": ["k"]}, {"dedup_key": "k", "dedup_extend": "maybe"},
])
def test_bad_dedup_options_are_refused(client, served, broker, args):
    served()
    response = client.post("/baichuan/publish", json={"topic": TOPIC, "data": {}, **args})
    refused(response, 400, "ERR_BAD_PARAMS", "dedup")
    assert broker.counts(TOPIC)["queued"] == 0


def test_openapi_documents_dedup(client):
    spec = json.dumps(client.get("/openapi.json").get_json()["paths"]["/baichuan/publish"])
    assert all(name in spec for name in ("dedup_key", "dedup_mode", "dedup_ttl",
                                          "dedup_extend"))
