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
                             "result", "exc_info", "description", "cost", "progress",
                             "error_kind"}
        assert data["status"] == "finished" and data["origin"] == TOPIC
        assert data["progress"] is None  # its handler reported none
        assert data["error_kind"] is None  # it did not fail
        assert data["handle_worker"] == "w1" and data["cost"] == 0.01
        assert data["result"] == '{"stat": "OK", "str_info": "finished"}'
        for key in ("created_at", "enqueued_at", "started_at", "ended_at"):
            assert TIME.match(data[key]), key
    failed = client.get(f"/canghai/msg_show?msg_id={ids['failed']}", headers=ADMIN)
    assert failed.get_json()["data"]["error_kind"] == "exception"  # Broker.fail's default
    missing = client.get("/canghai/msg_show?msg_id=NOPE", headers=ADMIN)
    assert missing.status_code == 404 and missing.get_json() == {"stat": "ERR_MSG_NOT_EXIST"}


def test_message_page_shows_the_error_kind_only_when_set(client, broker) -> None:
    ids = _messages(broker)
    sign_in(client, "vera")
    html = client.get(f"/console/message?id={ids['failed']}").text
    assert '<dd class="mono" data-field="error-kind">exception</dd>' in html
    assert "<dt>错误类型</dt>" in html and 'data-field="error">Traceback: boom</pre>' in html
    for plain in (ids["finished"], ids["queued"]):
        assert 'data-field="error-kind"' not in client.get(f"/console/message?id={plain}").text


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


#: the ten original read calls (names the admin pages call and their older aliases)
def _reads(ids: dict[str, str]) -> list[str]:
    names = ("queue_list", "list_queues", "worker_list", "list_workers")
    return [*(f"/canghai/{n}" for n in names),
            *(f"/canghai/{n}?name=w1" for n in ("worker_show", "worker_info")),
            *(f"/canghai/{n}?queue_name={TOPIC}&registry_name=finished"
              for n in ("msg_list", "list_msgs")),
            *(f"/canghai/{n}?msg_id={ids['finished']}" for n in ("msg_show", "msg_info"))]


PROXIED = {"BUTTERFLY_TRUSTED_PROXIES": "127.0.0.1/32"}


def test_a_trusted_proxys_user_reads_whether_or_not_canghai_knows_them(app_for, broker):
    """The fleet's rule: X-Username from a trusted proxy is a caller (a viewer without
    X-Role), also for a user of the proxy's sign-in that canghai does not keep."""
    client = app_for(**PROXIED).test_client()
    ids = _messages(broker)
    for path in _reads(ids):
        r = client.get(path, headers={"X-Username": "sso-user"})
        assert r.status_code == 200 and r.get_json()["stat"] == "OK", (path, r.headers)
    # the same headers from an address that is not a trusted proxy are nobody's
    forged = client.get("/canghai/queue_list", headers={"X-Username": "sso-user"},
                        environ_base={"REMOTE_ADDR": "10.9.8.7"})
    assert forged.status_code == 401 and forged.get_json() == {"stat": "ERR_UNAUTHORIZED"}
    # an empty or "-" name is no one
    for name in ("-", " "):
        assert client.get("/canghai/queue_list", headers={"X-Username": name}) \
            .status_code == 401


def test_a_proxy_users_writes_go_by_the_forwarded_role(app_for, broker):
    from butterfly_canghai import audit, users

    client = app_for(**PROXIED).test_client()
    users.add_user("otto", "correct horse battery", "operator")
    ids = _messages(broker)
    body = {"msg_id": ids["queued"]}
    # no X-Role: a viewer; operator: still below admin; canghai's operator claiming admin:
    # capped at the role canghai holds for them
    for headers in ({"X-Username": "sso-user"},
                    {"X-Username": "sso-user", "X-Role": "operator"},
                    {"X-Username": "otto", "X-Role": "admin"}):
        r = client.post("/canghai/msg_delete", json=body, headers=headers)
        assert r.status_code == 403 and r.headers["x-reason"].startswith(
            "needs role admin"), headers
    assert broker.get(ids["queued"]) is not None
    r = client.post("/canghai/msg_delete", json=body,
                    headers={"X-Username": "sso-admin", "X-Role": "admin"})
    assert r.get_json() == {"stat": "OK", "data": {"id": ids["queued"]}}
    assert broker.get(ids["queued"]) is None
    # the audit log names the proxy's user
    total, rows = audit.recent(username="sso-admin", action="msg_delete")
    assert total == 1 and rows[0]["role"] == "admin" and rows[0]["ok"]
    # forged from an untrusted address: refused, nothing deleted
    r = client.post("/canghai/queue_empty", json={"queue_name": TOPIC,
                                                  "registry_name": "failed"},
                    headers={"X-Username": "sso-admin", "X-Role": "admin"},
                    environ_base={"REMOTE_ADDR": "10.9.8.7"})
    assert r.status_code == 401 and broker.counts(TOPIC)["failed"] == 1


def test_the_fleets_operator_and_read_tokens_read(app_for, broker):
    client = app_for(BUTTERFLY_OPERATOR_TOKEN="test-operator-token-0123456789",
                     BUTTERFLY_READ_TOKEN="test-read-token-0123456789").test_client()
    ids = _messages(broker)
    for token in ("test-operator-token-0123456789", "test-read-token-0123456789"):
        r = client.get(f"/canghai/msg_show?msg_id={ids['failed']}",
                       headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200 and r.get_json()["data"]["status"] == "failed"
        # canghai's deletes are the admin's
        r = client.post("/canghai/msg_delete", json={"msg_id": ids["failed"]},
                        headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 403
    r = client.get("/canghai/queue_list", headers={"Authorization": "Bearer wrong-token-0"})
    assert r.status_code == 401
