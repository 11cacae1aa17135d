"""``topic_limits`` / ``set_topic_limits``: admin only, audited, bad input a clear 400, the
limits obeyed by claims and shown with the running count; the maintenance gauges."""

from __future__ import annotations

import json
import logging

import pytest
from baichuan_helpers import ADMIN, OPERATOR, TOPIC, refused
from prometheus_client import REGISTRY

from butterfly_baichuan.maintenance import run_once
from butterfly_common.mq import Broker


def set_limits(client, headers=ADMIN, **args):
    return client.post("/baichuan/set_topic_limits", json={"topic": TOPIC, **args},
                       headers=headers)


def read_limits(client, topic=TOPIC):
    body = client.get("/baichuan/topic_limits", query_string={"topic": topic}).get_json()
    assert body["stat"] == "OK", body
    return body


def test_admin_sets_limits_and_claims_obey(client, served, broker, caplog):
    served()
    for n in range(5):
        broker.publish(TOPIC, {"n": n})
    with caplog.at_level(logging.WARNING, logger="butterfly.baichuan.audit"):
        response = set_limits(client, max_running=2, rate=100, rate_window=30)
    body = response.get_json()
    assert response.status_code == 200 and body["stat"] == "OK", body
    assert (body["max_running"], body["rate"], body["rate_window"]) == (2, 100, 30.0)
    assert body["set_by"] == "admin-token" and body["set_at"] > 0
    assert any(TOPIC in r.getMessage() and "-> 2" in r.getMessage() for r in caplog.records)
    assert len(broker.claim(TOPIC, "w1", 5)) == 2
    assert broker.claim(TOPIC, "w1", 5) == []
    shown = read_limits(client)
    assert (shown["running"], shown["window_used"], shown["held"]) == (2, 2, 2)
    assert shown["held_at"] is not None


def test_clearing_restores_flow(client, served, broker):
    served()
    for n in range(4):
        broker.publish(TOPIC, {"n": n})
    set_limits(client, max_running=1)
    assert len(broker.claim(TOPIC, "w1", 4)) == 1
    body = set_limits(client).get_json()  # no limit given: cleared
    assert body["stat"] == "OK" and body["max_running"] is None and body["rate"] is None
    assert len(broker.claim(TOPIC, "w1", 4)) == 3
    shown = read_limits(client)
    assert (shown["max_running"], shown["running"], shown["held"]) == (None, 4, 0)


@pytest.mark.parametrize("headers,code,stat", [
    ({}, 401, "ERR_UNAUTHORIZED"), (OPERATOR, 403, "ERR_FORBIDDEN")])
def test_viewer_and_operator_are_refused(client, served, broker, headers, code, stat):
    refused(set_limits(client, headers=headers, max_running=1), code, stat)
    assert broker.limits(TOPIC).max_running is None
    assert read_limits(client)["max_running"] is None  # reading is open, like topics


@pytest.mark.parametrize("args,word", [
    ({"max_running": 0}, "max_running"), ({"max_running": -3}, "max_running"),
    ({"max_running": 1.5}, "max_running"), ({"max_running": "x"}, "max_running"),
    ({"max_running": True}, "max_running"), ({"max_running": 10**30}, "max_running"),
    ({"rate": 0}, "rate"), ({"rate": 10**7}, "rate"),
    ({"rate": 5, "rate_window": 0}, "rate_window"),
    ({"rate": 5, "rate_window": -1}, "rate_window"),
    ({"rate": 5, "rate_window": 10**9}, "rate_window"),
    ({"rate": 5, "rate_window": 0.0005}, "rate_window"),
    ({"rate": 5, "rate_window": "soon"}, "rate_window"),
    ({"rate_window": 2}, "rate_window")])
def test_bad_limits_are_a_400(client, broker, args, word):
    refused(set_limits(client, **args), 400, "ERR_BAD_PARAMS", word)
    assert broker.client.exists(broker.keys(TOPIC).limits) == 0


def test_bad_topic_is_refused(client):
    refused(client.post("/baichuan/set_topic_limits", json={"topic": "{x}", "rate": 1},
                        headers=ADMIN), 400, "ERR_BAD_TOPIC")
    refused(client.get("/baichuan/topic_limits", query_string={"topic": "a b"}), 400,
            "ERR_BAD_TOPIC")


def test_openapi_documents_the_routes(client):
    paths = client.get("/openapi.json").get_json()["paths"]
    assert "max_running" in json.dumps(paths["/baichuan/set_topic_limits"])
    assert "/baichuan/topic_limits" in paths


def test_maintenance_shows_limit_gauges(client, served, broker, redis):
    served()
    for n in range(3):
        broker.publish(TOPIC, {"n": n})
    set_limits(client, max_running=1, rate=50)
    broker.claim(TOPIC, "w1", 3)
    run_once(Broker(redis), prune_after=60)

    def sample(name, **labels):
        return REGISTRY.get_sample_value(name, {"topic": TOPIC, **labels})

    assert sample("butterfly_queue_limit", limit="max_running") == 1
    assert sample("butterfly_queue_limit", limit="rate") == 50
    assert sample("butterfly_queue_limited_claims") == 1
    set_limits(client)
    run_once(Broker(redis), prune_after=60)
    assert sample("butterfly_queue_limit", limit="max_running") is None
    assert sample("butterfly_queue_limited_claims") is None
