"""Listings (topics, msgs, workers) and the dead-letter / clean-up actions with their
admin rules."""

from __future__ import annotations

import pytest
from baichuan_helpers import ADMIN, OPERATOR, TOPIC, refused

OTHER = "/demo_api/ping"


def publish(client, topic=TOPIC, **data):
    body = client.post("/baichuan/publish", json={"topic": topic, "data": data}).get_json()
    assert body["stat"] == "OK", body
    return body["msg_id"]


def dead_letter(client, broker, topic=TOPIC):
    """Publish one message and fail it for good; returns its id."""
    msg_id = publish(client, topic)
    [msg] = broker.claim(topic, "w1")
    assert broker.fail(msg, "boom", retry=False) == "failed"
    return msg_id


# -- listings -----------------------------------------------------------------------------

def test_topics_counts_and_consumers(client, served, broker):
    served(TOPIC, OTHER)
    served(TOPIC, worker="w2")
    for n in range(3):
        publish(client, n=n)
    dead_letter(client, broker)
    client.post("/baichuan/publish", json={"topic": TOPIC, "data": {}, "delay": 60})
    body = client.get("/baichuan/topics").get_json()
    assert body["stat"] == "OK"
    rows = {row["topic"]: row for row in body["data"]["list"]}
    assert body["data"]["total"] == 2
    assert rows[TOPIC] == {"topic": TOPIC, "queued": 3, "delayed": 1, "started": 0,
                           "finished": 0, "failed": 1, "consumers": 2}
    assert rows[OTHER]["consumers"] == 1 and rows[OTHER]["queued"] == 0
    page = client.get("/baichuan/topics?page_size=1&page_index=2").get_json()["data"]
    assert page["total"] == 2 and [r["topic"] for r in page["list"]] == [OTHER]


def test_msgs_pages_and_orders(client, served):
    served()
    ids = [publish(client, n=n) for n in range(5)]
    newest = client.get("/baichuan/msgs", query_string={"topic": TOPIC, "page_size": 2}
                        ).get_json()["data"]
    assert newest["total"] == 5 and [m["id"] for m in newest["list"]] == ids[:-3:-1]
    oldest = client.get("/baichuan/msgs", query_string={
        "topic": TOPIC, "order": "oldest", "page_size": 2, "page_index": 3}).get_json()
    assert [m["id"] for m in oldest["data"]["list"]] == ids[4:]
    assert oldest["data"]["list"][0]["data"] == {"n": 4}
    empty = client.get("/baichuan/msgs", query_string={"topic": TOPIC,
                                                       "status": "failed"}).get_json()
    assert empty["data"] == {"total": 0, "list": []}


def test_msgs_refusals(client):
    refused(client.get(f"/baichuan/msgs?topic={TOPIC}&status=done"), 400, "ERR_BAD_STATUS",
            "done", "queued")
    refused(client.get(f"/baichuan/msgs?topic={TOPIC}&order=random"), 400, "ERR_BAD_PARAMS",
            "order")
    refused(client.get(f"/baichuan/msgs?topic={TOPIC}&page_size=0"), 400, "ERR_BAD_PARAMS",
            "page_size")
    refused(client.get(f"/baichuan/msgs?topic={TOPIC}&page_size=5000"), 400,
            "ERR_BAD_PARAMS", "page_size")
    refused(client.get(f"/baichuan/msgs?topic={TOPIC}&page_index=0"), 400, "ERR_BAD_PARAMS",
            "page_index")
    refused(client.get("/baichuan/msgs", query_string={"topic": "/a{b}"}), 400,
            "ERR_BAD_TOPIC", "braces")
    refused(client.get("/baichuan/msgs"), 400, "ERR_BAD_PARAMS", "topic")
    refused(client.get("/baichuan/topics?page_index=-1"), 400, "ERR_BAD_PARAMS", "page_index")


def test_workers_list(client, served, broker):
    served(TOPIC, worker="w-b")
    served(OTHER, worker="w-a")
    body = client.get("/baichuan/workers").get_json()
    assert body["stat"] == "OK" and body["data"]["total"] == 2
    first, second = body["data"]["list"]
    assert (first["id"], second["id"]) == ("w-a", "w-b")
    assert first["topics"] == [OTHER] and first["alive"] is True
    assert first["info"] == {"host": "test", "pid": 1}
    page = client.get("/baichuan/workers?page_size=1&page_index=2").get_json()["data"]
    assert [w["id"] for w in page["list"]] == ["w-b"]


# -- requeue ---------------------------------------------------------------------------------

def test_requeue_of_one_failed_message_is_an_operators_write(client, served, broker):
    served()
    msg_id = dead_letter(client, broker)
    # anyone could re-run someone else's dead letter before: now it is a write
    refused(client.post("/baichuan/requeue", json={"topic": TOPIC, "msg_id": msg_id}),
            401, "ERR_UNAUTHORIZED", "authorization required")
    assert broker.get(msg_id).status == "failed"
    body = client.post("/baichuan/requeue", json={"topic": TOPIC, "msg_id": msg_id},
                       headers=OPERATOR)
    assert body.get_json() == {"stat": "OK", "requeued": 1, "msg_id": msg_id}
    assert broker.get(msg_id).status == "queued"
    assert broker.get(msg_id).attempts == 0
    assert not client.application.routes["/baichuan/requeue"].is_topic


def test_requeue_refusals(client, served, broker):
    served()
    queued = publish(client)
    refused(client.post("/baichuan/requeue", json={"topic": TOPIC, "msg_id": queued},
                        headers=OPERATOR), 409, "ERR_MSG_NOT_FAILED", "queued")
    refused(client.post("/baichuan/requeue", json={"topic": TOPIC, "msg_id": "ghost"},
                        headers=OPERATOR), 404, "ERR_MSG_NOT_FOUND", "ghost")
    refused(client.post("/baichuan/requeue", json={"topic": TOPIC}, headers=OPERATOR),
            400, "ERR_BAD_PARAMS", "msg_id")
    refused(client.post("/baichuan/requeue", json={"topic": TOPIC, "msg_id": queued,
                                                   "all": True}, headers=ADMIN),
            400, "ERR_BAD_PARAMS", "msg_id")
    refused(client.post("/baichuan/requeue", json={"topic": "/x y", "msg_id": queued},
                        headers=OPERATOR), 400, "ERR_BAD_TOPIC", "whitespace")


def test_requeue_all_is_admin_only(client, served, broker):
    served()
    ids = [dead_letter(client, broker) for _ in range(3)]
    refused(client.post("/baichuan/requeue", json={"topic": TOPIC, "all": True}),
            401, "ERR_UNAUTHORIZED", "authorization required")
    refused(client.post("/baichuan/requeue", json={"topic": TOPIC, "all": True},
                        headers=OPERATOR), 403, "ERR_FORBIDDEN", "needs role admin")
    refused(client.post("/baichuan/requeue", json={"topic": TOPIC, "all": True},
                        headers={"Authorization": "Bearer wrong-token-wrong-token"}),
            401, "ERR_UNAUTHORIZED", "invalid")
    assert broker.counts(TOPIC)["failed"] == 3
    body = client.post("/baichuan/requeue", json={"topic": TOPIC, "all": True},
                       headers=ADMIN).get_json()
    assert body == {"stat": "OK", "requeued": 3}
    assert {broker.get(i).status for i in ids} == {"queued"}


def test_admin_actions_are_off_without_a_token(app_for, served, broker):
    client = app_for(BUTTERFLY_ADMIN_TOKEN=None, BUTTERFLY_OPERATOR_TOKEN=None)
    served()
    msg_id = publish(client)
    for path, args in (("/baichuan/requeue", {"topic": TOPIC, "all": True}),
                       ("/baichuan/delete", {"topic": TOPIC, "msg_id": msg_id}),
                       ("/baichuan/purge", {"topic": TOPIC}),
                       ("/baichuan/set_topic_limits", {"topic": TOPIC, "rate": 1})):
        refused(client.post(path, json=args, headers=ADMIN), 403, "ERR_FORBIDDEN",
                "BUTTERFLY_ADMIN_TOKEN")
    assert broker.get(msg_id) is not None


# -- delete and purge ----------------------------------------------------------------------

def test_delete(client, served, broker):
    served()
    msg_id = publish(client)
    refused(client.post("/baichuan/delete", json={"topic": TOPIC, "msg_id": msg_id}),
            401, "ERR_UNAUTHORIZED", "authorization required")
    body = client.post("/baichuan/delete", json={"topic": TOPIC, "msg_id": msg_id},
                       headers=ADMIN).get_json()
    assert body == {"stat": "OK", "deleted": 1, "msg_id": msg_id}
    assert broker.get(msg_id) is None and broker.counts(TOPIC)["queued"] == 0
    refused(client.post("/baichuan/delete", json={"topic": TOPIC, "msg_id": msg_id},
                        headers=ADMIN), 404, "ERR_MSG_NOT_FOUND", msg_id)
    refused(client.post("/baichuan/delete", json={"topic": "/{x}", "msg_id": msg_id},
                        headers=ADMIN), 400, "ERR_BAD_TOPIC")


def test_delete_fences_out_a_running_consumer(client, served, broker):
    served()
    msg_id = publish(client)
    [msg] = broker.claim(TOPIC, "w1")
    client.post("/baichuan/delete", json={"topic": TOPIC, "msg_id": msg_id}, headers=ADMIN)
    assert broker.complete(msg, {"stat": "OK"}) is False
    assert broker.get(msg_id) is None


def test_purge(client, served, broker):
    served()
    for _ in range(2):
        dead_letter(client, broker)
    publish(client)
    refused(client.post("/baichuan/purge", json={"topic": TOPIC}), 401, "ERR_UNAUTHORIZED")
    refused(client.post("/baichuan/purge", json={"topic": TOPIC, "status": "gone"},
                        headers=ADMIN), 400, "ERR_BAD_STATUS", "gone", "all")
    body = client.post("/baichuan/purge", json={"topic": TOPIC}, headers=ADMIN).get_json()
    assert body == {"stat": "OK", "purged": 2}
    assert broker.counts(TOPIC) == {"queued": 1, "delayed": 0, "started": 0, "finished": 0,
                                    "failed": 0}
    body = client.post("/baichuan/purge", json={"topic": TOPIC, "status": "all"},
                       headers=ADMIN).get_json()
    assert body == {"stat": "OK", "purged": 1}


@pytest.mark.parametrize("path", ["/baichuan/purge", "/baichuan/delete"])
def test_admin_routes_check_the_token_before_params(client, path):
    refused(client.post(path, json={}), 401, "ERR_UNAUTHORIZED")
