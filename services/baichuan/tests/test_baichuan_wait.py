"""wait: a bounded long-poll that answers as soon as the message is finished or failed."""

from __future__ import annotations

import threading
import time

from baichuan_helpers import TOPIC, refused

from butterfly_common.testing import wait_until


def publish(client, data=None, **options):
    body = client.post("/baichuan/publish", json={"topic": TOPIC, "data": data or {},
                                                  **options}).get_json()
    assert body["stat"] == "OK", body
    return body["msg_id"]


def consume_later(broker, after, outcome="complete"):
    """A stand-in consumer: after ``after`` s, claim one message and finish or fail it."""
    def run():
        time.sleep(after)  # the point of the test: the result arrives mid-wait
        msgs = wait_until(lambda: broker.claim(TOPIC, "w1"), 5, what="a message to claim")
        for msg in msgs:
            if outcome == "complete":
                broker.complete(msg, {"stat": "OK", "echo": msg.data}, cost=0.001)
            else:
                broker.fail(msg, "boom: handler raised", retry=False)
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_wait_returns_as_soon_as_finished(client, served, broker):
    served()
    msg_id = publish(client, {"str_info": "hi"})
    worker = consume_later(broker, 0.3)
    started = time.monotonic()
    response = client.get("/baichuan/wait", query_string={"msg_id": msg_id, "timeout": 10})
    elapsed = time.monotonic() - started
    worker.join(5)
    body = response.get_json()
    assert response.status_code == 200 and body["stat"] == "OK"
    assert body["status"] == "finished" and body["error_kind"] is None
    assert body["result"] == {"stat": "OK", "echo": {"str_info": "hi"}}
    assert 0.25 <= elapsed < 2.0, elapsed


def test_wait_answers_failed_messages_too(client, served, broker):
    served()
    msg_id = publish(client)
    worker = consume_later(broker, 0.1, outcome="fail")
    body = client.get("/baichuan/wait", query_string={"msg_id": msg_id}).get_json()
    worker.join(5)
    assert body["stat"] == "OK" and body["status"] == "failed"
    assert "boom" in body["error"] and body["error_kind"] == "exception"


def test_wait_already_finished_is_immediate(client, served, broker):
    served()
    msg_id = publish(client)
    [msg] = broker.claim(TOPIC, "w1")
    broker.complete(msg, {"stat": "OK"})
    started = time.monotonic()
    body = client.get("/baichuan/wait", query_string={"msg_id": msg_id}).get_json()
    assert body["status"] == "finished" and time.monotonic() - started < 0.5


def test_wait_timeout_answers_current_state_with_200(client, served):
    served()
    msg_id = publish(client)
    started = time.monotonic()
    response = client.get("/baichuan/wait", query_string={"msg_id": msg_id,
                                                          "timeout": 0.3})
    elapsed = time.monotonic() - started
    body = refused(response, 200, "ERR_WAIT_TIMEOUT", msg_id, "queued")
    assert body["status"] == "queued" and body["id"] == msg_id
    assert 0.3 <= elapsed < 1.5, elapsed


def test_wait_is_capped_by_max_wait(app_for, served):
    client = app_for(BAICHUAN_MAX_WAIT="0.2")
    served()
    msg_id = publish(client)
    started = time.monotonic()
    response = client.get("/baichuan/wait", query_string={"msg_id": msg_id,
                                                          "timeout": 30})
    assert time.monotonic() - started < 1.5
    refused(response, 200, "ERR_WAIT_TIMEOUT", "0.2s")


def test_wait_zero_checks_once(client, served):
    served()
    msg_id = publish(client)
    refused(client.get("/baichuan/wait", query_string={"msg_id": msg_id, "timeout": 0}),
            200, "ERR_WAIT_TIMEOUT")


def test_wait_refusals(client):
    refused(client.get("/baichuan/wait?msg_id=missing"), 404, "ERR_MSG_NOT_FOUND", "missing")
    refused(client.get("/baichuan/wait?msg_id=x&timeout=-1"), 400, "ERR_BAD_PARAMS",
            "timeout")
    refused(client.get("/baichuan/wait?msg_id=x&timeout=nan"), 400, "ERR_BAD_PARAMS",
            "timeout")
    refused(client.get("/baichuan/wait?msg_id=x&timeout=later"), 400, "ERR_BAD_PARAMS",
            "timeout")


def test_message_deleted_while_waiting(client, served, broker):
    served()
    msg_id = publish(client)

    def delete_later():
        time.sleep(0.2)  # let the wait start polling first
        broker.delete(TOPIC, msg_id)

    thread = threading.Thread(target=delete_later, daemon=True)
    thread.start()
    response = client.get("/baichuan/wait", query_string={"msg_id": msg_id, "timeout": 5})
    thread.join(5)
    refused(response, 404, "ERR_MSG_NOT_FOUND", msg_id)
