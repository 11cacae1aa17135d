"""The original canghai API names answer with the fields the original admin pages read."""

from __future__ import annotations

import re

import pytest
from canghai_helpers import ADMIN_TOKEN, page_csrf, sign_in

from butterfly_common.mq import Broker

TOPIC = "/demo_api/hello"
TIME = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$")
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def _messages(broker: Broker) -> dict[str, str]:
    """One queued, one finished, one failed message on TOPIC; their ids."""
    broker.heartbeat("w1", [TOPIC], {"service": "core", "host": "h1", "pid": 1})
    ids = {s: broker.publish(TOPIC, {"str_info": s}).msg_id
           for s in ("finished", "failed", "queued")}
    done, bad = broker.claim(TOPIC, "w1", 2)
    broker.complete(done, {"stat": "OK", "str_info": "finished"}, 0.01)
    broker.fail(bad, "Traceback: boom", None, 0.02, retry=False)
    return ids


def test_queue_list_fields_and_alias(client, broker) -> None:
    _messages(broker)
    for path in ("/canghai/queue_list", "/canghai/list_queues"):
        body = client.get(path, headers=ADMIN).get_json()
        assert set(body) == {"stat", "data"} and body["stat"] == "OK"
        (row,) = body["data"]["queues"]
        assert row == {"name": TOPIC, "count": 1, "started_msg_registry_count": 0,
                       "finished_msg_registry_count": 1, "failed_msg_registry_count": 1}


def test_worker_list_and_show(client, broker) -> None:
    _messages(broker)
    body = client.get("/canghai/worker_list", headers=ADMIN).get_json()
    (w,) = body["data"]["workers"]
    assert set(w) == {"name", "nickname", "version", "queues_count", "state"}
    assert w["name"] == "w1" and w["nickname"] == "core@h1" and w["state"] == "started"
    assert w["queues_count"] == 1
    detail = client.get("/canghai/worker_show?name=w1", headers=ADMIN).get_json()["data"]
    assert detail["queues"] == [TOPIC] and TIME.match(detail["last_heartbeat"])
    assert client.get("/canghai/worker_info?name=w1", headers=ADMIN).get_json()["data"] == detail
    missing = client.get("/canghai/worker_show?name=nope", headers=ADMIN)
    assert missing.status_code == 404 and missing.get_json() == {"stat": "ERR_WORKER_NOT_EXIST"}


def test_msg_list_fields(client, broker) -> None:
    ids = _messages(broker)
    for path in ("/canghai/msg_list", "/canghai/list_msgs"):
        r = client.get(f"{path}?queue_name={TOPIC}&registry_name=failed", headers=ADMIN)
        data = r.get_json()["data"]
        assert data["total"] == 1
        (m,) = data["list"]
        assert set(m) == {"id", "msg_data", "created_at", "ended_at", "exc_info",
                          "description"}
        assert m["id"] == ids["failed"] and m["exc_info"] == "Traceback: boom"
        assert TIME.match(m["created_at"]) and TIME.match(m["ended_at"])
        assert m["msg_data"] == '{"str_info": "failed"}'
    queued = client.get(f"/canghai/msg_list?queue_name={TOPIC}", headers=ADMIN).get_json()
    assert queued["data"]["list"][0]["ended_at"] == "-"
    bad = client.get(f"/canghai/msg_list?queue_name={TOPIC}&registry_name=nope", headers=ADMIN)
    assert bad.status_code == 400 and bad.headers["x-reason"].startswith("registry_name")


def test_msg_show_fields(client, broker) -> None:
    ids = _messages(broker)
    for path in ("/canghai/msg_show", "/canghai/msg_info"):
        data = client.get(f"{path}?msg_id={ids['finished']}", headers=ADMIN).get_json()["data"]
        assert set(data) == {"id", "msg_data", "status", "origin", "created_at",
                             "enqueued_at", "started_at", "ended_at", "handle_worker",
                             "result", "exc_info", "description", "cost", "progress"}
        assert data["status"] == "finished" and data["origin"] == TOPIC
        assert data["progress"] is None  # its handler reported none
        assert data["handle_worker"] == "w1" and data["cost"] == 0.01
        assert data["result"] == '{"stat": "OK", "str_info": "finished"}'
        for key in ("created_at", "enqueued_at", "started_at", "ended_at"):
            assert TIME.match(data[key]), key
    missing = client.get("/canghai/msg_show?msg_id=NOPE", headers=ADMIN)
    assert missing.status_code == 404 and missing.get_json() == {"stat": "ERR_MSG_NOT_EXIST"}


def _in_progress(broker: Broker, note: str) -> str:
    """A started message whose handler reported 3 of 10 steps with ``note``; its id."""
    broker.heartbeat("w1", [TOPIC], {"service": "core", "host": "h1", "pid": 1})
    msg_id = broker.publish(TOPIC, {"str_info": "long"}).msg_id
    (msg,) = broker.claim(TOPIC, "w1", 1)
    assert broker.progress(msg, 3, 10, note)
    return msg_id


def test_msg_show_and_message_page_carry_progress(client, broker) -> None:
    msg_id = _in_progress(broker, "copying <b>files</b>")
    data = client.get(f"/canghai/msg_show?msg_id={msg_id}", headers=ADMIN).get_json()["data"]
    assert data["status"] == "started"
    assert data["progress"] == {"done": 3, "total": 10, "note": "copying <b>files</b>"}
    sign_in(client, "vera")
    html = client.get(f"/console/message?id={msg_id}").text
    assert '<progress class="bar" value="3" max="10">30%</progress>' in html
    assert '<span class="mono" data-field="progress-count">3 / 10</span>' in html
    assert "copying &lt;b&gt;files&lt;/b&gt;" in html and "<b>files" not in html
    plain = _messages(broker)["queued"]
    assert 'data-field="progress"' not in client.get(f"/console/message?id={plain}").text


def test_reads_need_an_identity(client, broker) -> None:
    r = client.get("/canghai/queue_list")
    assert r.status_code == 401 and r.get_json() == {"stat": "ERR_UNAUTHORIZED"}
    assert "x-reason" in r.headers
    sign_in(client, "vera")
    assert client.get("/canghai/queue_list").status_code == 200


def test_delete_and_empty_need_admin_and_post(client, broker) -> None:
    ids = _messages(broker)
    sign_in(client, "otto")  # an operator may not delete
    csrf = page_csrf(client)
    r = client.post("/canghai/msg_delete", json={"msg_id": ids["queued"]},
                    headers={"X-CSRF-Token": csrf})
    assert r.status_code == 403 and "admin" in r.headers["x-reason"]
    r = client.get(f"/canghai/msg_delete?msg_id={ids['queued']}", headers=ADMIN)
    assert r.status_code == 405
    r = client.post("/canghai/delete_msg", json={"msg_id": ids["queued"]}, headers=ADMIN)
    assert r.get_json() == {"stat": "OK", "data": {"id": ids["queued"]}}
    assert broker.get(ids["queued"]) is None
    r = client.post("/canghai/queue_empty", json={"queue_name": TOPIC,
                                                  "registry_name": "failed"}, headers=ADMIN)
    assert r.get_json() == {"stat": "OK", "data": {"deleted_count": 1}}
    assert broker.counts(TOPIC)["failed"] == 0


def test_session_write_needs_csrf_header(client, broker) -> None:
    ids = _messages(broker)
    sign_in(client, "ada")
    r = client.post("/canghai/msg_delete", json={"msg_id": ids["queued"]})
    assert r.status_code == 403 and "CSRF" in r.headers["x-reason"]
    r = client.post("/canghai/msg_delete", json={"msg_id": ids["queued"]},
                    headers={"X-CSRF-Token": page_csrf(client)})
    assert r.status_code == 200


@pytest.mark.parametrize("form", ["Bearer {t}", "Bearer: {t}"])
def test_jwt_reads_in_both_header_forms(client, broker, form) -> None:
    token = client.post("/auth/ssologin", json={"username": "vera", "password":
                                                "correct horse battery"}).get_json()
    jwt = token["data"]["butterfly_token"]
    r = client.get("/canghai/queue_list", headers={"Authorization": form.format(t=jwt)})
    assert r.status_code == 200
