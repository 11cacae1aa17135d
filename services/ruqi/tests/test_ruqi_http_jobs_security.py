"""Issue 12, defect 3: job control needs authorization, HTTP jobs only reach allowed targets.

Real local HTTP servers play the targets; a fake resolver only where DNS itself is the
attack (a name that passes the check, then connects somewhere else).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from butterfly_common import Refusal, db, runtime
from butterfly_common.app import create_app
from butterfly_common.redis_client import make_redis
from butterfly_common.settings import load_settings
from butterfly_ruqi import safety, service
from butterfly_ruqi.allowlist import AllowList, parse_allow
from butterfly_ruqi.commands import run_command

OPERATOR = "operator-token-0123456789"
ADMIN = "admin-token-0123456789ab"
JOB = {"job_trigger": "interval", "job_id": "s1", "job_name": "sec", "rule": "1h"}
WRITES = ["add_job", "job_add", "modify_job", "job_modify", "remove_job", "job_remove",
          "pause_job", "job_pause", "resume_job", "job_resume", "run_job", "wakeup",
          "backfill_job"]


class Target:
    """A local HTTP server: ``/redirect`` answers 302 to ``location``, ``/big`` 100 KB."""

    def __init__(self, location: str = "") -> None:
        self.calls: list[str] = []
        target = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                target.calls.append(self.path)
                if self.path.startswith("/redirect"):
                    self.send_response(302)
                    self.send_header("Location", location)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = ("y" * 100_000 if self.path.startswith("/big") else "secret-page").encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def target() -> Iterator[Target]:
    server = Target()
    yield server
    server.close()


def make_client(redis_url: str, tmp_path: Path, **extra: str):
    settings = load_settings({"BUTTERFLY_REDIS_URL": redis_url,
                              "BUTTERFLY_DB_URL": f"sqlite:///{tmp_path / 'sec.db'}",
                              "BUTTERFLY_DATA_DIR": str(tmp_path / "data"),
                              "RUQI_TIMEZONE": "UTC", "BUTTERFLY_LOG_DIR": "-", **extra})
    app = create_app("ruqi", settings)
    service.setup(settings)
    return app.test_client()


@pytest.fixture
def fresh(redis_server) -> Iterator[str]:
    make_redis(redis_server.url).flushall()
    yield redis_server.url
    db.database.close()


def run(cmd: str):
    return run_command(cmd, script_dir=None, timeout=5, reqid="0123456789ABCDEF",
                       job_id="j1", scheduled=1700000000.0)


# -- authorization ------------------------------------------------------------------------

def test_defect_03_job_writes_need_authorization(fresh, tmp_path, target):
    client = make_client(fresh, tmp_path, BUTTERFLY_OPERATOR_TOKEN=OPERATOR,
                         BUTTERFLY_ADMIN_TOKEN=ADMIN, RUQI_HTTP_ALLOW="127.0.0.1")
    job = {**JOB, "cmd": f"{target.url}/x"}
    for name in WRITES:
        resp = client.post(f"/ruqi/{name}", json=job if "add" in name or "modify" in name
                           else {"job_id": "s1"} if name != "wakeup" else {})
        assert resp.status_code == 401, name
        assert resp.get_json() == {"stat": "ERR_UNAUTHORIZED"} and resp.headers["x-reason"]
    for token in (OPERATOR, ADMIN):
        auth = {"Authorization": f"Bearer {token}"}
        assert client.post("/ruqi/add_job", json=job, headers=auth).status_code == 200
        # removal is an admin's (the console's role table): the operator token gets 403
        removed = client.post("/ruqi/remove_job", json={"job_id": "s1"}, headers=auth)
        assert removed.status_code == (403 if token == OPERATOR else 200), token
        if token == OPERATOR:
            assert client.post("/ruqi/remove_job", json={"job_id": "s1"}, headers={
                "Authorization": f"Bearer {ADMIN}"}).status_code == 200
    # reads stay open
    assert client.get("/ruqi/get_jobs").get_json()["stat"] == "OK"
    assert client.get("/ruqi/get_history").get_json()["stat"] == "OK"
    assert client.get("/ruqi/status").get_json()["stat"] == "OK"
    routes = client.application.routes
    assert not any(routes[f"/ruqi/{name}"].is_topic for name in WRITES)
    assert routes["/ruqi/get_jobs"].is_topic


def test_defect_03_admin_pages_behind_a_trusted_proxy_keep_working(fresh, tmp_path, target):
    client = make_client(fresh, tmp_path, BUTTERFLY_TRUSTED_PROXIES="127.0.0.1",
                         RUQI_HTTP_ALLOW="127.0.0.1")
    job = {**JOB, "cmd": f"{target.url}/x"}
    operator = {"X-Username": "alice", "X-Role": "operator"}
    resp = client.post("/ruqi/job_add", json=job, headers=operator)
    assert resp.get_json()["stat"] == "OK"
    assert client.post("/ruqi/job_pause", json={"job_id": "s1"}).status_code == 401
    # the console's role table: a viewer changes nothing, removal is an admin's
    viewer = client.post("/ruqi/job_pause", json={"job_id": "s1"},
                         headers={"X-Username": "vic"})
    assert viewer.status_code == 403 and "you are viewer" in viewer.headers["x-reason"]
    assert client.post("/ruqi/job_remove", json={"job_id": "s1"},
                       headers=operator).status_code == 403
    assert client.post("/ruqi/job_remove", json={"job_id": "s1"},
                       headers={"X-Username": "ada", "X-Role": "admin"}).status_code == 200


def test_defect_03_job_writes_are_off_with_nothing_configured(fresh, tmp_path):
    client = make_client(fresh, tmp_path)
    resp = client.post("/ruqi/add_job", json={**JOB, "cmd": "/demo_api/hello"},
                       headers={"X-Username": "alice"})
    assert resp.status_code == 403 and "BUTTERFLY_OPERATOR_TOKEN" in resp.headers["x-reason"]


# -- the allow-list -------------------------------------------------------------------------

def test_defect_03_default_allows_only_the_fleet_services(fresh, tmp_path, target):
    client = make_client(fresh, tmp_path, BUTTERFLY_OPERATOR_TOKEN=OPERATOR)
    auth = {"Authorization": f"Bearer {OPERATOR}"}
    for url in (f"{target.url}/x", "http://127.0.0.1:6379/", "http://169.254.169.254/latest",
                "http://10.1.2.3/", "http://[::1]:22/", "http://localhost:9/",
                "http://0.0.0.0:4300/"):
        resp = client.post("/ruqi/add_job", json={**JOB, "cmd": url}, headers=auth)
        assert resp.status_code == 400, url
        assert resp.get_json()["stat"] == "ERR_HTTP_NOT_ALLOWED", url
        assert "RUQI_HTTP_ALLOW" in resp.headers["x-reason"]
    # core, baichuan and ruqi themselves, on their configured local ports
    for url in ("http://127.0.0.1:8585/demo_api/hello", "http://localhost:4300/x"):
        resp = client.post("/ruqi/add_job", json={**JOB, "job_id": f"ok{len(url)}",
                                                  "cmd": url}, headers=auth)
        assert resp.get_json()["stat"] == "OK", url


def test_defect_03_fleet_urls_from_configuration():
    entries = parse_allow("", {"BUTTERFLY_CORE_URL": "http://core:8585"})
    allow = AllowList(entries, resolver=lambda host, port: ["172.18.0.5"])
    allow.check_url("http://core:8585/demo_api/hello")  # private, but configured
    with pytest.raises(Refusal):
        allow.check_url("http://core:9999/")
    with pytest.raises(Refusal):
        allow.check_url("http://127.0.0.1:8585/")  # core lives elsewhere now


@pytest.mark.parametrize(("allow", "url", "resolved", "ok"), [
    ("api.example.com", "https://api.example.com/x", ["93.184.216.34"], True),
    ("api.example.com", "https://api.example.com/x", ["127.0.0.1"], False),
    ("api.example.com", "https://api.example.com/x", ["169.254.169.254"], False),
    ("api.example.com", "https://api.example.com/x", ["93.184.216.34", "10.0.0.1"], False),
    ("api.example.com,10.0.0.0/8", "https://api.example.com/x", ["10.0.0.1"], True),
    ("api.example.com:8443", "https://api.example.com/x", ["93.184.216.34"], False),
    ("api.example.com:8443", "https://api.example.com:8443/x", ["93.184.216.34"], True),
    ("*.example.com", "http://a.b.example.com/", ["93.184.216.34"], True),
    ("*.example.com", "http://example.com/", ["93.184.216.34"], False),
    ("*.example.com", "http://evil.com/?.example.com", ["93.184.216.34"], False),
    ("192.168.1.5", "http://192.168.1.5:81/", [], True),
    ("192.168.1.5:80", "http://192.168.1.5:81/", [], False),
    ("[::1]:8080", "http://[::1]:8080/", [], True),
    ("fleet", "http://127.0.0.1:4100/ruqi/status", [], True),
    ("api.example.com", "http://user:pw@api.example.com/", ["93.184.216.34"], False),
    ("api.example.com", "ftp://api.example.com/", ["93.184.216.34"], False),
])
def test_defect_03_allow_list_entries(allow, url, resolved, ok):
    checker = AllowList(parse_allow(allow, {}), resolver=lambda host, port: resolved)
    if ok:
        checker.check_url(url)
    else:
        with pytest.raises(Refusal):
            checker.check_url(url)


def test_defect_03_checked_again_at_fire_time(target, monkeypatch):
    monkeypatch.setattr(safety, "current", lambda: safety.Safety(AllowList(())))
    out = run(f"{target.url}/x")
    assert not out.success and "ERR_HTTP_NOT_ALLOWED" in out.output
    assert target.calls == []


def test_defect_03_a_name_that_rebinds_to_loopback_is_refused_on_connect(target, monkeypatch):
    # the check sees a public address; the connection then lands on 127.0.0.1
    rebinding = AllowList(parse_allow(f"localhost:{target.port}", {}),
                          resolver=lambda host, port: ["93.184.216.34"])
    monkeypatch.setattr(safety, "current", lambda: safety.Safety(rebinding))
    out = run(f"http://localhost:{target.port}/x")
    assert not out.success and "127.0.0.1" in out.output, out.output
    assert target.calls == []
    # and with the real resolver the name is refused before any connection
    real = AllowList(parse_allow(f"localhost:{target.port}", {}))
    monkeypatch.setattr(safety, "current", lambda: safety.Safety(real))
    out = run(f"http://localhost:{target.port}/x")
    assert not out.success and "loopback" in out.output and target.calls == []


def test_defect_03_redirects_are_not_followed(monkeypatch):
    inner = Target()
    outer = Target(location=f"{inner.url}/admin")
    try:
        allow = AllowList(parse_allow(f"127.0.0.1:{outer.port}", {}))
        monkeypatch.setattr(safety, "current", lambda: safety.Safety(allow))
        out = run(f"{outer.url}/redirect")
        assert not out.success
        assert out.output.startswith("HTTP 302") and "not followed" in out.output
        assert outer.calls == ["/redirect"] and inner.calls == []
    finally:
        inner.close()
        outer.close()


def test_defect_03_recorded_output_is_capped(target, monkeypatch):
    allow = AllowList(parse_allow("127.0.0.1", {}))
    monkeypatch.setattr(safety, "current", lambda: safety.Safety(allow))
    out = run(f"{target.url}/big")
    assert out.success and len(out.output.encode()) == 4096
    monkeypatch.setattr(safety, "current",
                        lambda: safety.Safety(allow, output_max_bytes=100))
    out = run(f"{target.url}/big")
    assert len(out.output.encode()) == 100 and out.output.endswith("...")


def test_defect_03_history_and_job_reads_hold_no_secrets(fresh, tmp_path, target, engines):
    from butterfly_common.testing import wait_until

    client = make_client(fresh, tmp_path, BUTTERFLY_OPERATOR_TOKEN=OPERATOR,
                         BUTTERFLY_ADMIN_TOKEN=ADMIN, RUQI_HTTP_ALLOW="127.0.0.1")
    auth = {"Authorization": f"Bearer {OPERATOR}"}
    assert client.post("/ruqi/add_job", json={**JOB, "cmd": f"{target.url}/x"},
                       headers=auth).get_json()["stat"] == "OK"
    engines.start(1)
    assert client.post("/ruqi/run_job", json={"job_id": "s1"},
                       headers=auth).get_json()["stat"] == "OK"
    wait_until(lambda: client.get("/ruqi/get_history").get_json()["data"]["total"], 10)
    text = json.dumps([client.get(f"/ruqi/{p}").get_json()
                       for p in ("get_jobs", "get_history", "status")])
    assert OPERATOR not in text and ADMIN not in text
    assert runtime.get_settings().redis_url not in text
