"""Admin token and trusted proxies."""

from __future__ import annotations

import json

TOKEN = "a-long-enough-admin-token"


def test_admin_off_without_token(client):
    response = client.post("/secure/wipe", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 403
    assert json.loads(response.data) == {"stat": "ERR_FORBIDDEN"}
    assert "BUTTERFLY_ADMIN_TOKEN" in response.headers["x-reason"]


def test_admin_token_required_and_checked(make_app):
    client = make_app(BUTTERFLY_ADMIN_TOKEN=TOKEN).test_client()
    for headers in ({}, {"Authorization": "Bearer"}, {"Authorization": "Bearer wrong-token"},
                    {"Authorization": f"Basic {TOKEN}"}, {"Authorization": TOKEN}):
        response = client.post("/secure/wipe", headers=headers)
        assert response.status_code == 401, headers
        assert json.loads(response.data) == {"stat": "ERR_UNAUTHORIZED"}
    ok = client.post("/secure/wipe", headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 200 and json.loads(ok.data) == {"stat": "OK", "wiped": True}


def test_identity_headers_ignored_from_untrusted_peers(make_app):
    client = make_app(BUTTERFLY_TRUSTED_PROXIES="10.0.0.0/8").test_client()
    body = json.loads(client.get("/secure/whoami", headers={
        "X-Real-IP": "1.2.3.4", "X-Username": "admin"}).data)
    assert body == {"stat": "OK", "ip": "127.0.0.1", "user": "-"}


def test_identity_headers_trusted_from_proxies(make_app):
    client = make_app(BUTTERFLY_TRUSTED_PROXIES="127.0.0.1, 10.0.0.0/8").test_client()
    body = json.loads(client.get("/secure/whoami", headers={
        "X-Real-IP": "1.2.3.4", "X-Username": "alice"}).data)
    assert body == {"stat": "OK", "ip": "1.2.3.4", "user": "alice"}
    body = json.loads(client.get("/secure/whoami", headers={
        "X-Forwarded-For": "9.9.9.9, 5.6.7.8"}).data)
    assert body["ip"] == "5.6.7.8" and body["user"] == "-"
    body = json.loads(client.get("/secure/whoami", environ_base={"REMOTE_ADDR": "10.1.2.3"},
                                 headers={"X-Username": "carol"}).data)
    assert body == {"stat": "OK", "ip": "10.1.2.3", "user": "carol"}


OPERATOR = "an-operator-token-123"


def test_defect_03_write_actions_are_off_with_nothing_configured(client):
    response = client.post("/secure/change", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 403
    assert json.loads(response.data) == {"stat": "ERR_FORBIDDEN"}
    assert "BUTTERFLY_OPERATOR_TOKEN" in response.headers["x-reason"]


def test_defect_03_write_needs_operator_or_admin_token(make_app):
    client = make_app(BUTTERFLY_ADMIN_TOKEN=TOKEN, BUTTERFLY_OPERATOR_TOKEN=OPERATOR).test_client()
    for headers in ({}, {"Authorization": "Bearer wrong-token-xxxxxxxx"},
                    {"Authorization": f"Basic {OPERATOR}"}, {"X-Username": "mallory"}):
        response = client.post("/secure/change", headers=headers)
        assert response.status_code == 401, headers
        assert json.loads(response.data) == {"stat": "ERR_UNAUTHORIZED"}
        assert response.headers["x-reason"]
    for token in (OPERATOR, TOKEN):
        ok = client.post("/secure/change", headers={"Authorization": f"Bearer {token}"})
        assert ok.status_code == 200 and json.loads(ok.data)["changed"] == "x"
    # the operator token is not an admin token
    assert client.post("/secure/wipe", headers={
        "Authorization": f"Bearer {OPERATOR}"}).status_code == 401


def test_defect_03_write_accepts_a_user_named_by_a_trusted_proxy(make_app):
    client = make_app(BUTTERFLY_TRUSTED_PROXIES="10.0.0.0/8").test_client()
    ok = client.post("/secure/change", environ_base={"REMOTE_ADDR": "10.1.2.3"},
                     headers={"X-Username": "alice"})
    assert ok.status_code == 200 and json.loads(ok.data)["user"] == "alice"
    # the same header from anyone else, or the proxy without a user, is not enough
    for environ, headers in (({"REMOTE_ADDR": "192.0.2.7"}, {"X-Username": "alice"}),
                             ({"REMOTE_ADDR": "10.1.2.3"}, {})):
        response = client.post("/secure/change", environ_base=environ, headers=headers)
        assert response.status_code == 401, (environ, headers)


def test_defect_03_write_routes_are_never_topics_and_documented(make_app):
    app = make_app()
    state = app.extensions["butterfly"]
    assert not state.routes["/secure/change"].is_topic
    spec = json.loads(app.test_client().get("/openapi.json").data)
    op = spec["paths"]["/secure/change"]["post"]
    assert {"operatorToken": []} in op["security"] and {"401", "403"} <= set(op["responses"])
    assert spec["components"]["securitySchemes"]["operatorToken"]["scheme"] == "bearer"


def test_refusal_answers_stat_data_reason_and_status(make_app):
    client = make_app().test_client()
    response = client.post("/secure/refuse")
    assert response.status_code == 400
    assert json.loads(response.data) == {"stat": "ERR_NOPE", "hint": 1}
    assert response.headers["x-reason"] == "no, because"
    assert client.post("/secure/refuse", json={"code": 409}).status_code == 409
    legacy = make_app(BUTTERFLY_LEGACY_STATUS="1").test_client()
    assert legacy.post("/secure/refuse", json={"code": 409}).status_code == 200


def test_operator_token_needs_16_characters():
    import pytest

    from butterfly_common.settings import SettingsError, load_settings

    with pytest.raises(SettingsError, match="BUTTERFLY_OPERATOR_TOKEN"):
        load_settings({"BUTTERFLY_OPERATOR_TOKEN": "short"})
    assert load_settings({"BUTTERFLY_OPERATOR_TOKEN": OPERATOR}).operator_token == OPERATOR
