"""Roles hold across the fleet behind the shipped nginx sample.

Debian's nginx runs ``deploy/nginx/`` as shipped (only ports and paths rewritten) in
front of canghai, ruqi, wuxing, baichuan and xingqiao as real processes on one Redis and
MariaDB. Users of each role sign in at huoyan for a JWT; nginx asks huoyan, forwards
``X-Username`` and ``X-Role``, and each service checks the role its route declares:
every write route refuses a viewer, an operator passes all but the admin ones, an admin
passes all; a client's own ``X-Username`` / ``X-Role`` never get through.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from butterfly_common.testing import (
    ButterflyService,
    NginxSite,
    RedisServer,
    mariadb_database,
)

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "deploy" / "nginx"
SECRET = "nginx-roles-test-secret-key-0123456789abcdef"
PASSWORD = "roles-test-password-1"
SERVICES = ("canghai", "ruqi", "wuxing", "baichuan", "xingqiao")
#: the sample's upstream ports (deploy/fleet.toml), rewritten to the test's
SAMPLE_PORTS = {"canghai": ["4400"], "ruqi": ["4100", "4101"], "wuxing": ["4200"],
                "baichuan": ["4300"], "xingqiao": ["4700"]}
#: canghai's own API checks the role itself (a session needs CSRF): its two writes
CANGHAI_WRITES = {"/canghai/msg_delete": ("admin", {"msg_id": "01NOPE"}),
                  "/canghai/queue_empty": ("admin", {"queue_name": "/demo_api/hello",
                                                     "registry_name": "failed"})}


class Fleet:
    def __init__(self, front: str, services: dict[str, ButterflyService],
                 env: dict[str, str]) -> None:
        self.front, self.services, self.env = front, services, env
        self.tokens: dict[str, str] = {}

    def post(self, path: str, role: str | None, body: dict[str, Any] | None = None,
             headers: dict[str, str] | None = None) -> requests.Response:
        auth = {"Authorization": f"Bearer {self.tokens[role]}"} if role else {}
        return requests.post(f"{self.front}{path}", json=body or {}, timeout=30,
                             headers={**auth, **(headers or {})})


def _add_user(env: dict[str, str], name: str, role: str) -> None:
    subprocess.run([sys.executable, "-m", "butterfly_common.cli", "user", "add", name,
                    "--role", role, "--password-stdin"], input=PASSWORD, text=True,
                   env={**os.environ, **env}, check=True, timeout=60, capture_output=True)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    tmp = tmp_path_factory.mktemp("nginx-roles")
    with contextlib.ExitStack() as stack:
        db_url = stack.enter_context(mariadb_database("bf_roles"))
        redis = stack.enter_context(RedisServer())
        env = {"BUTTERFLY_REDIS_URL": redis.url, "BUTTERFLY_DB_URL": db_url,
               "BUTTERFLY_SECRET_KEY": SECRET, "BUTTERFLY_TRUSTED_PROXIES": "127.0.0.1/32",
               "BUTTERFLY_WORKERS": "1", "BUTTERFLY_THREADS": "4",
               "CANGHAI_ADMIN_PASSWORD": PASSWORD, "CANGHAI_ADMIN_USER": "ada",
               "CANGHAI_FLEET_FILE": str(tmp / "none.toml"), "RUQI_HTTP_ALLOW": "127.0.0.1",
               "RUQI_TIMEZONE": "UTC"}
        services = {name: ButterflyService(name, env) for name in SERVICES}
        for service in services.values():
            stack.enter_context(service)
        _add_user(env, "vic", "viewer")
        _add_user(env, "otto", "operator")
        rewrites = {"/srv/butterfly-admin": str(tmp)}
        for name, sample_ports in SAMPLE_PORTS.items():
            for sample_port in sample_ports:
                rewrites[f"127.0.0.1:{sample_port}"] = f"127.0.0.1:{services[name].port}"
        nginx = stack.enter_context(NginxSite(SAMPLE / "butterfly-admin.conf", tmp, rewrites))
        fleet = Fleet(nginx.url, services, env)
        for role, user in (("viewer", "vic"), ("operator", "otto"), ("admin", "ada")):
            r = requests.post(f"{fleet.front}/auth/ssologin", timeout=30,
                              json={"username": user, "password": PASSWORD})
            assert r.status_code == 200, r.text
            assert r.json()["data"]["role"] == role
            fleet.tokens[role] = r.json()["data"]["token"]
        yield fleet


def write_routes(fleet: Fleet) -> dict[str, tuple[str, dict[str, Any]]]:
    """Every write route of every service behind nginx with the role it needs, from each
    service's own /openapi.json (its ``security``), plus canghai's two."""
    routes: dict[str, tuple[str, dict[str, Any]]] = dict(CANGHAI_WRITES)
    for name in SERVICES:
        spec = requests.get(f"{fleet.services[name].url}/openapi.json", timeout=30).json()
        for path, item in spec["paths"].items():
            security = item.get("post", {}).get("security")
            if security:
                role = "admin" if security == [{"adminToken": []}] else "operator"
                routes[path] = (role, {})
    return routes


ALLOWED = {"viewer": set(), "operator": {"operator"}, "admin": {"operator", "admin"}}


def test_every_write_route_of_every_service_checks_the_role_nginx_forwards(fleet: Fleet):
    routes = write_routes(fleet)
    # every service behind the sample has write routes, and the destructive ones are admin
    assert {path.split("/")[1] for path in routes} == set(SERVICES)
    for path in ("/ruqi/remove_job", "/ruqi/job_remove", "/wuxing/instance_delete",
                 "/wuxing/section_delete", "/xingqiao/delete_job", "/baichuan/purge",
                 "/baichuan/delete"):
        assert routes[path][0] == "admin", path
    for path in ("/ruqi/add_job", "/ruqi/run_job", "/ruqi/pause_job",
                 "/wuxing/section_create", "/xingqiao/create_job", "/baichuan/requeue"):
        assert routes[path][0] == "operator", path
    wrong = []
    for role in ("viewer", "operator", "admin"):
        for path, (needed, body) in sorted(routes.items()):
            r = fleet.post(path, role, body)
            refused = r.status_code in (401, 403)
            if refused == (needed in ALLOWED[role]) or (refused and not r.headers.get(
                    "x-reason")):
                wrong.append((role, path, r.status_code, r.headers.get("x-reason")))
            if refused:
                assert r.status_code == 403 and r.json()["stat"] == "ERR_FORBIDDEN", \
                    (role, path, r.status_code)
    assert wrong == []


JOB = {"job_trigger": "interval", "job_id": "roles1", "job_name": "roles",
       "cmd": "http://127.0.0.1:9/x", "rule": "1h"}


def test_a_viewers_jwt_changes_nothing_an_operator_may_not_remove(fleet: Fleet):
    """The attacker's requests, replayed: each answered OK for a viewer before."""
    for path, body in (("/ruqi/add_job", JOB), ("/ruqi/run_job", {"job_id": "roles1"}),
                       ("/ruqi/pause_job", {"job_id": "roles1"}),
                       ("/ruqi/remove_job", {"job_id": "roles1"}),
                       ("/wuxing/section_create", {"namespace": "roles", "section_name":
                                                   "s", "section_version": "1"}),
                       ("/xingqiao/create_job", {"job_namespace": "roles",
                                                 "job_type": "nope"})):
        r = fleet.post(path, "viewer", body)
        assert r.status_code == 403, (path, r.status_code, r.text)
        needed = "admin" if "remove" in path else "operator"
        assert r.headers["x-reason"] == f"needs role {needed} (you are viewer)"
    jobs = requests.get(f"{fleet.front}/ruqi/get_job", params={"job_id": "roles1"},
                        headers={"Authorization": f"Bearer {fleet.tokens['viewer']}"},
                        timeout=30)
    assert jobs.json()["stat"] == "ERR_JOB_NOT_FOUND"  # the viewer's add_job left nothing
    assert fleet.post("/ruqi/add_job", "operator", JOB).json()["stat"] == "OK"
    assert fleet.post("/ruqi/pause_job", "operator", {"job_id": "roles1"}).json()["stat"] \
        == "OK"
    assert fleet.post("/wuxing/section_create", "operator", {
        "namespace": "roles", "section_name": "s", "section_version": "1"}).json()["stat"] \
        == "OK"
    r = fleet.post("/ruqi/remove_job", "operator", {"job_id": "roles1"})
    assert r.status_code == 403 and r.headers["x-reason"] == \
        "needs role admin (you are operator)"
    assert fleet.post("/ruqi/remove_job", "admin", {"job_id": "roles1"}).json()["stat"] \
        == "OK"


def test_a_client_forged_username_or_role_is_refused(fleet: Fleet):
    forged = {"X-Username": "ada", "X-Role": "admin"}
    # no token: huoyan says no, whatever the headers claim
    r = fleet.post("/ruqi/add_job", None, JOB, headers=forged)
    assert r.status_code == 401 and r.json()["data"] == {"redirect": "/auth/ssologin"}
    # a viewer's token with forged headers: nginx replaces them with huoyan's answer
    for path, body in (("/ruqi/add_job", JOB), ("/baichuan/purge", {"topic": "/a/b"}),
                       ("/canghai/queue_empty", CANGHAI_WRITES["/canghai/queue_empty"][1])):
        r = fleet.post(path, "viewer", body, headers=forged)
        assert r.status_code == 403, (path, r.status_code, r.text)
    # a made-up user (no token) on the locations without auth_request: cleared there too
    r = requests.get(f"{fleet.front}/auth/verification", headers=forged, timeout=30)
    assert r.status_code == 401


def test_each_service_verifies_a_jwt_itself_and_a_role_change_ends_it(fleet: Fleet):
    ruqi = fleet.services["ruqi"].url
    body = {**JOB, "job_id": "roles2"}

    def direct(token: str, path: str = "/ruqi/add_job") -> requests.Response:
        return requests.post(f"{ruqi}{path}", json=body, timeout=30,
                             headers={"Authorization": f"Bearer {token}"})

    assert direct(fleet.tokens["viewer"]).status_code == 403
    assert direct(fleet.tokens["operator"]).json()["stat"] == "OK"
    # a role change (here: operator -> viewer) signs the user out at every service
    subprocess.run([sys.executable, "-m", "butterfly_common.cli", "user", "role", "otto",
                    "--role", "viewer"], env={**os.environ, **fleet.env}, check=True,
                   timeout=60, capture_output=True)
    r = direct(fleet.tokens["operator"], "/ruqi/pause_job")
    assert r.status_code == 401 and r.headers["x-reason"] == "invalid token"
    assert fleet.post("/ruqi/pause_job", "operator", {"job_id": "roles2"}).status_code == 401


# -- the original admin pages' reads -------------------------------------------------------

#: the eleven reads of the original admin pages that the nginx sample must let through:
#: canghai's original API (the names the pages call and the older aliases) and xingqiao's
#: flow detail; {msg}, {worker} and {job} are filled in by the test
ADMIN_PAGE_READS = (
    "/canghai/queue_list", "/canghai/list_queues",
    "/canghai/worker_list", "/canghai/list_workers",
    "/canghai/worker_show?name={worker}", "/canghai/worker_info?name={worker}",
    "/canghai/msg_list?queue_name=/roles_api/hello&registry_name=queued",
    "/canghai/list_msgs?queue_name=/roles_api/hello&registry_name=queued",
    "/canghai/msg_show?msg_id={msg}", "/canghai/msg_info?msg_id={msg}",
    "/xingqiao/get_job_detail?job_id={job}",
)


@pytest.fixture(scope="module")
def admin_page_reads(fleet: Fleet) -> list[str]:
    """The eleven paths, with a queued message, a live consumer and a running flow."""
    from butterfly_common.mq import Broker
    from butterfly_common.redis_client import make_redis

    broker = Broker(make_redis(fleet.env["BUTTERFLY_REDIS_URL"]))
    broker.heartbeat("roles-worker", ["/roles_api/hello"], {"service": "roles", "host": "h"})
    msg = broker.publish("/roles_api/hello", {"str_info": "roles"}).msg_id
    r = fleet.post("/xingqiao/create_job", "admin",  # (the operator was signed out above)
                   {"job_namespace": "roles", "job_type": "ping"})
    assert r.json()["stat"] == "OK", r.text
    job = r.json()["data"]["job_id"]
    return [p.format(msg=msg, worker="roles-worker", job=job) for p in ADMIN_PAGE_READS]


def _from(source: str, url: str, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    """GET ``url`` from the local address ``source`` (127.0.0.2 is not a trusted proxy)."""
    import http.client
    import json
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30,
                                      source_address=(source, 0))
    try:
        conn.request("GET", f"{parts.path}?{parts.query}", headers=headers)
        reply = conn.getresponse()
        return reply.status, json.loads(reply.read() or b"{}")
    finally:
        conn.close()


def test_the_admin_pages_reads_pass_nginx_as_the_signed_in_user(fleet: Fleet,
                                                               admin_page_reads: list[str]):
    """nginx strips the token and forwards huoyan's X-Username / X-Role: every read
    answers OK for the lowest and the highest role, and the flow detail carries job_lock."""
    assert len(admin_page_reads) == 11
    for role in ("viewer", "admin"):
        for path in admin_page_reads:
            r = requests.get(f"{fleet.front}{path}", timeout=30,
                             headers={"Authorization": f"Bearer: {fleet.tokens[role]}"})
            assert r.status_code == 200 and r.json()["stat"] == "OK", (role, path, r.text)
    detail = requests.get(f"{fleet.front}{admin_page_reads[-1]}", timeout=30, headers={
        "Authorization": f"Bearer {fleet.tokens['viewer']}"}).json()["data"]
    # a ping flow whose first task waits on a topic nobody serves: its message is out
    assert detail["job_status"] == "started" and detail["job_lock"] is True


def test_the_admin_pages_reads_take_a_trusted_proxys_user_alone(fleet: Fleet,
                                                               admin_page_reads: list[str]):
    """What nginx sends, X-Username and nothing else, from the trusted proxy's address:
    every service takes it as the caller (a viewer), canghai too, also for a user of the
    proxy's sign-in that canghai does not keep."""
    for user in ("vic", "sso-only-user"):
        for path in admin_page_reads:
            service = fleet.services[path.split("/")[1]]
            status, body = _from("127.0.0.1", f"{service.url}{path}", {"X-Username": user})
            assert status == 200 and body["stat"] == "OK", (user, path, status, body)


def test_the_admin_pages_reads_refuse_without_identity(fleet: Fleet,
                                                       admin_page_reads: list[str]):
    forged = {"X-Username": "ada", "X-Role": "admin"}
    for path in admin_page_reads:
        # no token at nginx: the admin pages' 401 JSON, whatever the headers claim
        for headers in ({}, forged):
            r = requests.get(f"{fleet.front}{path}", headers=headers, timeout=30)
            assert r.status_code == 401 and r.json() == {
                "success": False, "message": "You are not authorized",
                "data": {"redirect": "/auth/ssologin"}}, (path, headers)
    # straight at canghai from an address that is not a trusted proxy: the forged user is
    # nobody (xingqiao's reads are open under the default BUTTERFLY_READ_AUTH)
    canghai = fleet.services["canghai"].url
    for path in admin_page_reads[:-1]:
        status, body = _from("127.0.0.2", f"{canghai}{path}", forged)
        assert status == 401 and body == {"stat": "ERR_UNAUTHORIZED"}, (path, status, body)
