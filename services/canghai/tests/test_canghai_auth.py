"""huoyan: sign-in, sessions, CSRF, roles, lockout, JWTs for nginx auth_request, the CLI."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from canghai_helpers import PASSWORD, SECRET, csrf_of, page_csrf, sign_in

from butterfly_common.settings import SettingsError

TOPIC = "/demo_api/hello"


def test_sign_in_and_out(client) -> None:
    assert client.get("/console/queues").headers["Location"].startswith("/console/login")
    r = sign_in(client, "vera")
    assert r.status_code == 302 and r.headers["Location"] == "/console/"
    cookie = r.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" in cookie
    assert client.get("/console/queues").status_code == 200
    client.post("/console/logout", data={"csrf_token": page_csrf(client)})
    assert client.get("/console/queues").status_code == 302


def test_cookies_are_secure_unless_development_or_turned_off(app_for) -> None:
    from butterfly_canghai import users

    for env, secure in (({}, True), ({"CANGHAI_COOKIE_SECURE": "1"}, True),
                        ({"BUTTERFLY_ENV": "development"}, False),
                        ({"CANGHAI_COOKIE_SECURE": "0"}, False)):
        app = app_for(**env)
        if users.get_user("ada") is None:
            users.add_user("ada", PASSWORD, "admin")
        client = app.test_client()
        r = sign_in(client, "ada")
        assert ("Secure" in r.headers["Set-Cookie"]) is secure, env
        token = client.get("/auth/ssologin?next=/x").headers["Set-Cookie"]
        # the token cookie the original pages read from script: not HttpOnly, Secure too
        assert "butterfly_token=" in token and "HttpOnly" not in token
        assert ("Secure" in token) is secure, env


def _session_token(client) -> tuple[str, str]:
    """Sign-in cookie value and a JWT issued to that session."""
    cookie = client.get_cookie("canghai_session").value
    r = client.get("/auth/ssologin?next=/x")
    token = r.headers["Set-Cookie"].split("butterfly_token=")[1].split(";")[0]
    return cookie, token


def test_sign_out_ends_the_session_and_its_tokens_server_side(app, redis) -> None:
    from butterfly_common.auth import epoch_key

    client = app.test_client()
    sign_in(client, "otto")
    cookie, token = _session_token(client)
    bearer = {"Authorization": f"Bearer {token}"}
    assert client.get("/auth/verification", headers=bearer).status_code == 200
    assert redis.get(epoch_key("otto")) is not None  # the services can check it too
    client.post("/console/logout", data={"csrf_token": page_csrf(client)})
    replay = app.test_client()
    replay.set_cookie("canghai_session", cookie)
    assert replay.get("/console/queues").status_code == 302  # back to the login page
    assert replay.get("/canghai/queue_list").status_code == 401
    assert client.get("/auth/verification", headers=bearer).status_code == 401
    assert redis.get(epoch_key("otto")) is None  # and no service believes the token


def test_a_removed_then_re_added_user_gets_none_of_the_old_sessions_or_tokens(app) -> None:
    from butterfly_canghai import users

    client = app.test_client()
    sign_in(client, "vera")
    cookie, token = _session_token(client)
    users.remove_user("vera")
    users.add_user("vera", PASSWORD, "admin")  # same name, now an admin
    replay = app.test_client()
    replay.set_cookie("canghai_session", cookie)
    assert replay.get("/console/queues").status_code == 302
    assert client.get("/auth/verification", headers={
        "Authorization": f"Bearer {token}"}).status_code == 401


def test_a_token_without_ep_is_never_accepted(app) -> None:
    import time

    import jwt

    from butterfly_canghai import users

    now = int(time.time())
    claims = {"iss": "butterfly", "jti": "x", "iat": now, "exp": now + 600,
              "username": "ada", "role": "admin"}
    token = jwt.encode(claims, SECRET, algorithm="HS256")
    client = app.test_client()
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get("/auth/verification", headers=headers).status_code == 401
    assert client.get("/canghai/queue_list", headers=headers).status_code == 401
    epoch = users.get_user("ada").epoch
    with_ep = jwt.encode({**claims, "ep": epoch}, SECRET, algorithm="HS256")
    assert client.get("/auth/verification", headers={
        "Authorization": f"Bearer {with_ep}"}).status_code == 200


def test_wrong_password_and_lockout_per_user(client) -> None:
    for _ in range(5):
        r = sign_in(client, "vera", "wrong password")
        assert r.status_code == 200 and 'class="alert"' in r.text
    r = sign_in(client, "vera")  # right password, but locked now
    assert r.status_code == 429
    assert sign_in(client, "otto").status_code == 302  # other users are not locked


def test_lockout_per_address(app_for) -> None:
    from butterfly_canghai import users

    app = app_for(CANGHAI_LOCKOUT_IP_FAILURES="3")
    users.add_user("ada", PASSWORD, "admin")
    c = app.test_client()
    for name in ("x1", "x2", "x3"):
        sign_in(c, name, "nope-nope")
    assert sign_in(c, "ada").status_code == 429


def test_post_without_csrf_is_refused(client, broker) -> None:
    sign_in(client, "ada")
    r = client.post("/console/messages/requeue_all", data={"topic": TOPIC})
    assert r.status_code == 403
    r = client.post("/console/messages/requeue_all", data={"topic": TOPIC,
                                                           "csrf_token": "forged"})
    assert r.status_code == 403
    ok = client.post("/console/messages/requeue_all",
                     data={"topic": TOPIC, "csrf_token": page_csrf(client)})
    assert ok.status_code == 302


def test_viewer_is_refused_server_side(client, broker) -> None:
    sign_in(client, "vera")
    csrf = page_csrf(client)
    for path, data in (("/console/messages/requeue_all", {"topic": TOPIC}),
                       ("/console/messages/purge", {"topic": TOPIC, "status": "failed"}),
                       ("/console/users/add", {"username": "eve", "password": "x" * 9,
                                               "role": "admin"})):
        assert client.post(path, data={**data, "csrf_token": csrf}).status_code == 403, path
    from butterfly_canghai import audit

    _, rows = audit.recent(1, 50, "vera", "forbidden")
    assert len(rows) == 3 and all(r["reqid"] for r in rows)


def test_operator_may_requeue_but_not_purge(client, broker) -> None:
    sign_in(client, "otto")
    csrf = page_csrf(client)
    assert client.post("/console/messages/requeue_all",
                       data={"topic": TOPIC, "csrf_token": csrf}).status_code == 302
    assert client.post("/console/messages/purge", data={"topic": TOPIC, "status": "failed",
                                                        "csrf_token": csrf}).status_code == 403


def test_pages_escape_payloads(client, broker) -> None:
    payload = "<script>alert(1)</script><img src=x onerror=alert(2)>"
    broker.heartbeat("w1", [TOPIC])
    msg_id = broker.publish(TOPIC, {"str_info": payload}).msg_id
    sign_in(client, "vera")
    for path in (f"/console/messages?topic={TOPIC}&status=queued",
                 f"/console/message?id={msg_id}"):
        html = client.get(path).text
        assert "<script>alert" not in html and "<img src=x" not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_open_redirect_is_refused(client) -> None:
    csrf = csrf_of(client.get("/console/login").text)
    r = client.post("/console/login", data={"username": "vera", "password": PASSWORD,
                                            "csrf_token": csrf, "next": "//evil.example/"})
    assert r.headers["Location"] == "/console/"


@pytest.mark.parametrize("header", [("Authorization", "Bearer {t}"),
                                    ("Authorization", "Bearer: {t}"),
                                    ("Bearer", "{t}")])
def test_ssologin_and_verification(client, header) -> None:
    for prefix in ("/auth", "/huoyan"):
        r = client.post(f"{prefix}/ssologin", json={"username": "otto", "password": PASSWORD})
        body = r.get_json()
        assert r.status_code == 200 and body["success"] is True
        token = body["data"]["butterfly_token"]
        assert "butterfly_token=" in r.headers["Set-Cookie"]
        name, form = header
        ok = client.get(f"{prefix}/verification", headers={name: form.format(t=token)})
        assert ok.status_code == 200 and ok.headers["Username"] == "otto"
        assert ok.headers["X-Role"] == "operator"


def test_verification_refuses_with_login_url(client) -> None:
    r = client.get("/auth/verification")
    assert r.status_code == 401 and r.headers["Location"] == "/auth/ssologin"
    assert r.get_json()["success"] is False
    r = client.get("/auth/verification", headers={"Authorization": "Bearer not.a.jwt"})
    assert r.status_code == 401
    r = client.post("/auth/ssologin", json={"username": "otto", "password": "wrong-wrong"})
    assert r.status_code == 401


def test_password_change_revokes_tokens(client) -> None:
    from butterfly_canghai import users

    token = client.post("/auth/ssologin", json={"username": "otto", "password": PASSWORD}
                        ).get_json()["data"]["token"]
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get("/auth/verification", headers=headers).status_code == 200
    users.set_password("otto", "another password")
    assert client.get("/auth/verification", headers=headers).status_code == 401


def test_ssologin_from_session_redirects_with_token_cookie(client) -> None:
    assert client.get("/auth/ssologin").headers["Location"].startswith("/console/login")
    sign_in(client, "vera")
    r = client.get("/auth/ssologin?next=/admin/")
    assert r.status_code == 302 and r.headers["Location"] == "/admin/"
    assert "butterfly_token=" in r.headers["Set-Cookie"]


def test_secret_key_required_outside_development(app_for) -> None:
    with pytest.raises(SettingsError, match="BUTTERFLY_SECRET_KEY"):
        app_for(BUTTERFLY_SECRET_KEY="")
    with pytest.raises(SettingsError, match="at least 32"):
        app_for(BUTTERFLY_SECRET_KEY="short")
    app_for(BUTTERFLY_SECRET_KEY="", BUTTERFLY_ENV="development")  # generated local key


def test_first_admin_from_environment(app_for) -> None:
    from butterfly_canghai import users

    app_for(CANGHAI_ADMIN_PASSWORD="first-admin-pw")
    admin = users.authenticate("admin", "first-admin-pw")
    assert admin is not None and admin.role == "admin"


def test_user_cli(tmp_path) -> None:
    env = {**os.environ, "BUTTERFLY_DATA_DIR": str(tmp_path), "BUTTERFLY_LOG_DIR": "-",
           "BUTTERFLY_SECRET_KEY": SECRET}

    def cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "butterfly_common.cli", "user", *args],
                              input=stdin, capture_output=True, text=True, env=env,
                              cwd=tmp_path, timeout=60, check=False)

    assert cli("add", "ops", "--role", "operator", "--password-stdin",
               stdin="pw-of-ops-1\n").returncode == 0
    assert cli("add", "ops", "--password-stdin", stdin="pw-of-ops-1\n").returncode == 1
    assert cli("list").stdout.strip() == "ops\toperator"
    assert cli("passwd", "ops", "--password-stdin", stdin="new-pw-of-ops\n").returncode == 0
    assert cli("role", "ops", "--role", "admin").returncode == 0
    assert cli("remove", "ops").returncode == 0
    assert cli("remove", "ops").returncode == 1
    assert cli("list").stdout.strip() == ""


def test_concurrent_wrong_sign_ins_get_no_more_password_checks_than_the_limit(
        app, monkeypatch) -> None:
    import threading

    from butterfly_canghai import users

    checks: list[str] = []
    real = users.authenticate

    def counted(username: str, password: str):
        checks.append(username)
        return real(username, password)

    monkeypatch.setattr(users, "authenticate", counted)
    start = threading.Barrier(16)
    statuses: list[int] = []

    def attempt() -> None:
        client = app.test_client()
        start.wait(timeout=30)
        r = client.post("/auth/ssologin", json={"username": "vera", "password": "nope-nope"})
        statuses.append(r.status_code)

    threads = [threading.Thread(target=attempt) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert len(statuses) == 16
    assert len(checks) <= 5, len(checks)  # the limit (CANGHAI_LOCKOUT_FAILURES=5)
    assert statuses.count(429) == 16 - len(checks) and statuses.count(401) == len(checks)


def test_a_next_with_cr_or_lf_is_a_400_not_a_500(client) -> None:
    for bad in ("/console/\r\nSet-Cookie: x=1", "/x\ny", "/x\rEvil: 1"):
        csrf = csrf_of(client.get("/console/login").text)
        answers = [client.get("/console/login", query_string={"next": bad}),
                   client.post("/console/login", data={"username": "vera",
                                                       "password": PASSWORD,
                                                       "csrf_token": csrf, "next": bad})]
        sign_in(client, "vera")
        answers.append(client.get("/auth/ssologin", query_string={"next": bad}))
        for r in answers:
            assert r.status_code == 400, (bad, r.request.path, r.status_code)
            assert "control characters" in r.headers["x-reason"]


def test_refusal_audit_entries_are_rate_limited_per_address(app_for) -> None:
    from butterfly_canghai import users
    from butterfly_canghai.models import Audit

    app = app_for(CANGHAI_AUDIT_FAILURES_PER_MINUTE="5", CANGHAI_LOCKOUT_FAILURES="1000",
                  CANGHAI_LOCKOUT_IP_FAILURES="1000")
    users.add_user("ada", PASSWORD, "admin")
    client = app.test_client()
    for n in range(40):
        client.post("/auth/ssologin", json={"username": f"u{n}", "password": "nope-nope"})
        client.post("/console/messages/requeue_all", data={"topic": TOPIC})  # no CSRF
    for action in ("sign_in", "csrf_refused"):
        rows = list(Audit.select().where(Audit.action == action, Audit.ok == False)  # noqa: E712
                    .order_by(Audit.id))
        minutes: dict[int, list[str]] = {}
        for row in rows:  # the limit is per minute: the loop may straddle two
            minutes.setdefault(int(row.at // 60), []).append(row.detail)
        assert all(len(details) <= 6 for details in minutes.values()), (action, minutes)
        full = [d for d in minutes.values() if len(d) == 6]
        assert full and "rate limited" in full[0][-1]  # 5, then one that says so
        assert len(rows) < 40
    # successes are never rate-limited
    for _ in range(8):
        assert client.post("/auth/ssologin", json={"username": "ada",
                                                   "password": PASSWORD}).status_code == 200
    assert Audit.select().where(Audit.action == "token_issued").count() == 8


def test_audit_entries_older_than_the_retention_are_pruned_hourly(app_for, redis) -> None:
    import time

    from butterfly_canghai import audit
    from butterfly_canghai.models import Audit

    app_for(CANGHAI_AUDIT_DAYS="7")
    now = time.time()
    audit.record("ada", "admin", "old", ok=True)
    audit.record("ada", "admin", "new", ok=True)
    Audit.update(at=now - 8 * 86400).where(Audit.action == "old").execute()
    assert audit.prune_if_due(redis, 7, now) == 1
    assert audit.prune_if_due(redis, 7, now) is None  # one process per hour does it
    assert [r.action for r in Audit.select()] == ["new"]
