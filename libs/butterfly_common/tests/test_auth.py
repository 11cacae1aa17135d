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
