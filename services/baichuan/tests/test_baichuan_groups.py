"""Concurrency groups over HTTP: ``group`` on publish / publish_many (stored, shown,
served round-robin), ``group_max_running`` / ``group_limits`` on ``set_topic_limits``
(admin, obeyed by claims, shown by ``topic_limits``), bad input a clear 400, the gauge."""

from __future__ import annotations

import json

import pytest
from baichuan_helpers import ADMIN, OPERATOR, TOPIC, refused
from prometheus_client import REGISTRY

from butterfly_baichuan.maintenance import run_once
from butterfly_common.mq import Broker


def publish(client, **args):
    response = client.post("/baichuan/publish", json={"topic": TOPIC, "data": {}, **args})
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()["msg_id"]


def set_limits(client, headers=ADMIN, **args):
    return client.post("/baichuan/set_topic_limits", json={"topic": TOPIC, **args},
                       headers=headers)


def test_group_is_stored_shown_and_served_round_robin(client, served, broker):
    served()
    a = [publish(client, group="tenant-a") for _ in range(3)]
    b = publish(client, group="tenant-b")
    record = client.get("/baichuan/msg", query_string={"msg_id": b}).get_json()
    assert record["group"] == "tenant-b"
    assert [m.id for m in broker.claim(TOPIC, "w1", 4)] == [a[0], b, a[1], a[2]]


def test_publish_many_items_take_a_group(client, served, broker):
    served()
    body = client.post("/baichuan/publish_many", json={"messages": [
        {"topic": TOPIC, "data": {}, "group": "x"},
        {"topic": TOPIC, "data": {}, "group": "x"},
        {"topic": TOPIC, "data": {}, "group": "y"}]}).get_json()
    assert body["stat"] == "OK" and body["created"] == 3, body
    assert [m.group for m in broker.claim(TOPIC, "w1", 3)] == ["x", "y", "x"]


def test_admin_sets_group_limits_and_claims_obey(client, served, broker):
    served()
    for _ in range(4):
        publish(client, group="big")
        publish(client, group="small")
    response = set_limits(client, group_max_running=2, group_limits={"small": 1})
    body = response.get_json()
    assert response.status_code == 200 and body["stat"] == "OK", body
    assert (body["group_max_running"], body["group_limits"]) == (2, {"small": 1})
    assert sorted(m.group for m in broker.claim(TOPIC, "w1", 8)) == ["big", "big", "small"]
    shown = client.get("/baichuan/topic_limits", query_string={"topic": TOPIC}).get_json()
    assert shown["group_running"] == {"big": 2, "small": 1}
    assert shown["group_held"] == 1 and shown["group_held_at"] is not None
    assert shown["groups_ready"] == 2 and shown["running"] == 3
    cleared = set_limits(client).get_json()
    assert (cleared["group_max_running"], cleared["group_limits"]) == (None, {})


def test_operator_may_not_set_group_limits(client, served, broker):
    refused(set_limits(client, headers=OPERATOR, group_max_running=1), 403, "ERR_FORBIDDEN")
    assert broker.limits(TOPIC).group_max_running is None


@pytest.mark.parametrize("args,word", [
    ({"group_max_running": 0}, "group_max_running"),
    ({"group_max_running": "x"}, "group_max_running"),
    ({"group_max_running": 2.5}, "group_max_running"),
    ({"group_limits": {"a b": 1}}, "group"), ({"group_limits": {"a": 0}}, "group_limits"),
    ({"group_limits": {"a": "1"}}, "group_limits"), ({"group_limits": [1]}, "group_limits"),
    ({"group_limits": "x"}, "group_limits"),
    ({"group_limits": {f"g{i}": 1 for i in range(1001)}}, "group_limits")])
def test_bad_group_limits_are_a_400(client, broker, args, word):
    refused(set_limits(client, **args), 400, "ERR_BAD_PARAMS", word)
    assert broker.client.exists(broker.keys(TOPIC).limits) == 0


@pytest.mark.parametrize("value", ["", "a b", "{x}", "x" * 65, "é", ["a"], {"a": 1}])
def test_bad_group_is_refused(client, served, broker, value):
    served()
    response = client.post("/baichuan/publish", json={"topic": TOPIC, "data": {},
                                                      "group": value})
    refused(response, 400, "ERR_BAD_PARAMS", "group")
    response = client.post("/baichuan/publish_many", json={"messages": [
        {"topic": TOPIC, "data": {}, "group": value}]})
    refused(response, 400, "ERR_BAD_PARAMS", "messages[0]")
    assert broker.counts(TOPIC)["queued"] == 0


def test_maintenance_shows_the_group_gauges(client, served, broker, redis):
    served()
    for _ in range(3):
        publish(client, group="g")
    set_limits(client, group_max_running=1)
    broker.claim(TOPIC, "w1", 3)
    run_once(Broker(redis), prune_after=60)

    def sample(name, **labels):
        return REGISTRY.get_sample_value(name, {"topic": TOPIC, **labels})

    assert sample("butterfly_queue_limit", limit="group_max_running") == 1
    assert sample("butterfly_queue_group_held_claims") == 1
    set_limits(client)
    run_once(Broker(redis), prune_after=60)
    assert sample("butterfly_queue_limit", limit="group_max_running") is None
    assert sample("butterfly_queue_group_held_claims") is None


def test_openapi_documents_groups(client):
    paths = client.get("/openapi.json").get_json()["paths"]
    assert "group_max_running" in json.dumps(paths["/baichuan/set_topic_limits"])
    assert "group_limits" in json.dumps(paths["/baichuan/set_topic_limits"])
    assert "group" in json.dumps(paths["/baichuan/publish"])
