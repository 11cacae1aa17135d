"""The batch routes: ``publish_batch``, ``batch``, ``batches``, ``batch_cancel``; clear
4xx refusals for bad input. (The protocol's guarantees, on every topology and with
consumers SIGKILLed mid-batch: libs/butterfly_common/tests/test_mq_batch.py.)"""

from __future__ import annotations

import pytest
from baichuan_helpers import OPERATOR, TOPIC, refused

DONE = "/demo_api/batch_done"
DEEP: list = []
for _ in range(200):
    DEEP = [DEEP]


def run_all(broker, topic: str, stat: str = "OK") -> None:
    for m in broker.claim(topic, "w1", 100):
        assert broker.complete(m, {"stat": stat})
        broker.batch_ended(m, "ok" if stat == "OK" else "notok")


def test_publish_batch_read_it_and_get_the_callbacks_once(client, served, broker):
    served(TOPIC, DONE)
    body = client.post("/baichuan/publish_batch", json={
        "messages": [{"topic": TOPIC, "data": {"n": n}, "priority": n} for n in range(3)],
        "on_success": DONE, "on_complete": DONE, "data": {"order": 1}})
    assert body.status_code == 200, body.get_data(as_text=True)
    answer = body.get_json()
    bid = answer["batch_id"]
    assert answer["created"] == 3
    assert [r["msg_id"] for r in answer["results"]] == [f"batch.{bid}.{n}" for n in range(3)]
    record = client.get("/baichuan/batch", query_string={"batch_id": bid}).get_json()
    assert (record["state"], record["total"], record["pending"], record["progress"]) == (
        "open", 3, 3, 0.0)
    run_all(broker, TOPIC)
    record = client.get("/baichuan/batch", query_string={"batch_id": bid}).get_json()
    assert (record["state"], record["finished"], record["pending"], record["progress"]) == (
        "ended", 3, 0, 1.0)
    assert record["callbacks"] == {"success": "sent", "complete": "sent"}
    told = sorted(m.data["kind"] for m in broker.claim(DONE, "w1", 10))
    assert told == ["complete", "success"]
    listed = client.get("/baichuan/batches").get_json()["data"]
    assert listed["total"] == 1 and listed["list"][0]["batch_id"] == bid
    # idempotent by batch_id
    again = client.post("/baichuan/publish_batch", json={
        "messages": [{"topic": TOPIC, "data": {}}], "batch_id": "b-1"}).get_json()
    assert again["created"] == 1
    assert client.post("/baichuan/publish_batch", json={
        "messages": [{"topic": TOPIC, "data": {}}], "batch_id": "b-1"}
    ).get_json()["created"] == 0


def test_batch_cancel_is_an_operator_write(client, served, broker):
    served(TOPIC, DONE)
    bid = client.post("/baichuan/publish_batch", json={
        "messages": [{"topic": TOPIC, "data": {}}] * 4, "on_success": DONE,
        "on_complete": DONE}).get_json()["batch_id"]
    assert client.post("/baichuan/batch_cancel", json={"batch_id": bid}).status_code in (
        401, 403)
    body = client.post("/baichuan/batch_cancel", json={"batch_id": bid}, headers=OPERATOR)
    assert body.status_code == 200, body.get_data(as_text=True)
    record = body.get_json()
    assert (record["state"], record["failed"], record["pending"]) == ("canceled", 4, 0)
    assert [m.data["kind"] for m in broker.claim(DONE, "w1", 10)] == ["complete"]
    assert broker.counts(TOPIC)["failed"] == 4


@pytest.mark.parametrize(("payload", "code", "stat", "words"), [
    ({"messages": []}, 400, "ERR_BAD_PARAMS", "messages"),
    ({"messages": "x"}, 400, "ERR_BAD_PARAMS", "messages"),
    ({"messages": [{"topic": TOPIC, "data": {}, "msg_id": "a"}]}, 400, "ERR_BAD_PARAMS",
     "msg_id"),
    ({"messages": [{"topic": TOPIC}]}, 400, "ERR_BAD_PARAMS", "messages[0]"),
    ({"messages": [{"topic": "nope", "data": {}}]}, 400, "ERR_BAD_TOPIC", "messages[0]"),
    ({"messages": [{"topic": TOPIC, "data": {}}], "on_success": "x y"}, 400,
     "ERR_BAD_TOPIC", "on_success"),
    ({"messages": [{"topic": TOPIC, "data": {}}], "batch_id": "a b"}, 400,
     "ERR_BAD_PARAMS", "batch_id"),
    ({"messages": [{"topic": TOPIC, "data": {}}], "ttl": 0}, 400, "ERR_BAD_PARAMS", "ttl"),
    ({"messages": [{"topic": TOPIC, "data": {}}], "data": {"deep": DEEP}}, 400,
     "ERR_BAD_PARAMS", "nested"),
    ({"messages": [{"topic": TOPIC, "data": {}}], "data": {"big": "x" * 300_000}}, 413,
     "ERR_MSG_TOO_LARGE", "data"),
])
def test_bad_batches_are_refused(client, served, payload, code, stat, words):
    served(TOPIC)
    refused(client.post("/baichuan/publish_batch", json=payload), code, stat, words)
    assert client.get("/baichuan/batches").get_json()["data"]["total"] == 0


def test_unknown_batches_are_404(client):
    refused(client.get("/baichuan/batch", query_string={"batch_id": "nope"}), 404,
            "ERR_BATCH_NOT_FOUND", "nope")
    refused(client.post("/baichuan/batch_cancel", json={"batch_id": "nope"},
                        headers=OPERATOR), 404, "ERR_BATCH_NOT_FOUND")
    refused(client.get("/baichuan/batch", query_string={"batch_id": "{x}"}), 400,
            "ERR_BAD_PARAMS", "batch_id")
    body = client.get("/baichuan/batches", query_string={"page_index": 10**15}).get_json()
    assert body["data"] == {"total": 0, "list": []}


def test_maintenance_counts_ends_nobody_told(client, served, broker):
    """A consumer killed between its complete and the batch script: the maintenance pass
    counts the end from the record and sends the callback, once."""
    from butterfly_baichuan.maintenance import run_once

    served(TOPIC, DONE)
    bid = client.post("/baichuan/publish_batch", json={
        "messages": [{"topic": TOPIC, "data": {}}] * 2, "on_complete": DONE}
    ).get_json()["batch_id"]
    for m in broker.claim(TOPIC, "w1", 10):
        assert broker.complete(m, {"stat": "OK"})  # and the batch never told
    assert broker.get_batch(bid, repair=False).pending == 2
    assert run_once(broker, 3600).batches == 1
    assert broker.get_batch(bid, repair=False).callbacks["complete"] == "sent"
    assert run_once(broker, 3600).batches == 0  # it left the open set
    assert len(broker.claim(DONE, "w1", 10)) == 1
