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
    # the operator token is not an admin token: an operator, refused admin routes (403)
    for path in ("/secure/wipe", "/secure/drop"):
        refused = client.post(path, headers={"Authorization": f"Bearer {OPERATOR}"})
        assert refused.status_code == 403, path
        assert refused.headers["x-reason"] == "needs role admin (you are operator)"
    assert client.post("/secure/drop", headers={
        "Authorization": f"Bearer {TOKEN}"}).status_code == 200


def test_defect_03_write_accepts_a_user_named_by_a_trusted_proxy(make_app):
    client = make_app(BUTTERFLY_TRUSTED_PROXIES="10.0.0.0/8").test_client()
    ok = client.post("/secure/change", environ_base={"REMOTE_ADDR": "10.1.2.3"},
                     headers={"X-Username": "alice", "X-Role": "operator"})
    assert ok.status_code == 200 and json.loads(ok.data)["user"] == "alice"
    # the same headers from anyone else, or the proxy without a user, are not enough
    for environ, headers in (({"REMOTE_ADDR": "192.0.2.7"},
                              {"X-Username": "alice", "X-Role": "admin"}),
                             ({"REMOTE_ADDR": "10.1.2.3"}, {"X-Role": "admin"})):
        response = client.post("/secure/change", environ_base=environ, headers=headers)
        assert response.status_code == 401, (environ, headers)


PROXY = {"REMOTE_ADDR": "10.1.2.3"}


def test_a_proxied_user_without_a_role_is_a_viewer_and_may_not_write(make_app):
    client = make_app(BUTTERFLY_TRUSTED_PROXIES="10.0.0.0/8").test_client()
    for role in (None, "", "root", "Viewer"):
        headers = {"X-Username": "alice", **({"X-Role": role} if role is not None else {})}
        for path in ("/secure/change", "/secure/drop", "/secure/wipe"):
            response = client.post(path, environ_base=PROXY, headers=headers)
            assert response.status_code == 403, (role, path)
            assert json.loads(response.data) == {"stat": "ERR_FORBIDDEN"}
            assert "you are viewer" in response.headers["x-reason"]


def test_each_route_declares_its_role_and_the_proxy_role_is_checked(make_app):
    client = make_app(BUTTERFLY_TRUSTED_PROXIES="10.0.0.0/8").test_client()
    allowed = {"viewer": set(), "operator": {"/secure/change"},
               "admin": {"/secure/change", "/secure/drop", "/secure/wipe"}}
    for role, paths in allowed.items():
        for path in ("/secure/change", "/secure/drop", "/secure/wipe"):
            response = client.post(path, environ_base=PROXY,
                                   headers={"X-Username": "bob", "X-Role": role})
            assert response.status_code == (200 if path in paths else 403), (role, path)
    state = client.application
    assert {p: state.routes[p].spec.role for p in
            ("/secure/change", "/secure/drop", "/secure/wipe", "/secure/whoami")} == {
        "/secure/change": "operator", "/secure/drop": "admin", "/secure/wipe": "admin",
        "/secure/whoami": None}


def test_defect_03_write_routes_are_never_topics_and_documented(make_app):
    app = make_app()
    state = app
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


SECRET = "a-fleet-secret-of-at-least-32-characters"


def _jwt(username: str, role: str, ep: int | None = 7, key: str = SECRET, **extra) -> str:
    import time

    import jwt

    now = int(time.time())
    claims = {"iss": "butterfly", "jti": "x", "iat": now, "exp": now + 600,
              "username": username, "role": role, **extra}
    if ep is not None:
        claims["ep"] = ep
    return jwt.encode(claims, key, algorithm="HS256")


def test_a_service_verifies_huoyan_jwts_and_their_epoch_itself(make_app, redis_server):
    from butterfly_common.auth import epoch_key
    from butterfly_common.redis_client import make_redis

    client = make_app(BUTTERFLY_SECRET_KEY=SECRET).test_client()
    redis = make_redis(redis_server.url)
    for name in ("vera", "otto", "ada"):
        redis.set(epoch_key(name), "7")

    def post(path, token):
        return client.post(path, headers={"Authorization": f"Bearer {token}"})

    viewer, operator, admin = _jwt("vera", "viewer"), _jwt("otto", "operator"), \
        _jwt("ada", "admin")
    assert post("/secure/change", viewer).status_code == 403
    ok = post("/secure/change", operator)
    assert ok.status_code == 200 and json.loads(ok.data)["user"] == "otto"
    assert post("/secure/drop", operator).status_code == 403
    assert post("/secure/drop", admin).status_code == 200
    # no ep, another key, an epoch that moved on (sign-out, role change, removal): refused
    for token in (_jwt("otto", "operator", ep=None), _jwt("otto", "operator", key="k" * 40),
                  _jwt("otto", "operator", ep=6)):
        refused = post("/secure/change", token)
        assert refused.status_code == 401 and refused.headers["x-reason"] == "invalid token"
    redis.delete(epoch_key("otto"))
    assert post("/secure/change", operator).status_code == 401


READER = "a-read-only-token-0123"


def test_the_read_policy_closes_routes_without_a_role(make_app, redis_server):
    from butterfly_common.auth import epoch_key
    from butterfly_common.redis_client import make_redis

    make_redis(redis_server.url).set(epoch_key("vera"), "7")
    viewer_jwt = _jwt("vera", "viewer")
    creds = {"anonymous": ({}, {}),
             "read token": ({"Authorization": f"Bearer {READER}"}, {}),
             "operator token": ({"Authorization": f"Bearer {OPERATOR}"}, {}),
             "viewer jwt": ({"Authorization": f"Bearer {viewer_jwt}"}, {}),
             "proxy user": ({"X-Username": "pat"}, PROXY),
             "wrong token": ({"Authorization": "Bearer not-a-token-of-ours"}, {})}
    allowed = {"open": set(creds),
               "token": {"read token", "operator token", "viewer jwt"},
               "signed-in": {"read token", "operator token", "viewer jwt", "proxy user"}}
    for policy, who in allowed.items():
        client = make_app(BUTTERFLY_READ_AUTH=policy, BUTTERFLY_READ_TOKEN=READER,
                          BUTTERFLY_OPERATOR_TOKEN=OPERATOR, BUTTERFLY_SECRET_KEY=SECRET,
                          BUTTERFLY_TRUSTED_PROXIES="10.0.0.0/8").test_client()
        for name, (headers, environ) in creds.items():
            r = client.get("/secure/whoami", headers=headers, environ_base=environ)
            if name in who:
                assert r.status_code == 200, (policy, name)
            else:
                assert r.status_code == 401 and r.headers["x-reason"], (policy, name)
                assert json.loads(r.data) == {"stat": "ERR_UNAUTHORIZED"}
        # the read token reads and nothing more; built-ins stay open
        assert client.post("/secure/change", headers={
            "Authorization": f"Bearer {READER}"}).status_code == 403
        assert client.get("/healthz").status_code == 200


def test_read_policy_and_listen_address_settings():
    from pathlib import Path

    import pytest

    from butterfly_common.settings import SettingsError, load_settings

    assert load_settings({}).read_auth == "open"
    assert load_settings({"BUTTERFLY_READ_AUTH": "Signed-In"}).read_auth == "signed-in"
    with pytest.raises(SettingsError, match="BUTTERFLY_READ_AUTH"):
        load_settings({"BUTTERFLY_READ_AUTH": "closed"})
    with pytest.raises(SettingsError, match="BUTTERFLY_READ_TOKEN"):
        load_settings({"BUTTERFLY_READ_TOKEN": "short"})
    # a bare `butterfly serve` listens on this machine only; the image opts in to all
    assert load_settings({}).host == "127.0.0.1"
    dockerfile = Path(__file__).resolve().parents[3] / "deploy" / "Dockerfile"
    assert "BUTTERFLY_HOST=0.0.0.0" in dockerfile.read_text(encoding="utf-8")
