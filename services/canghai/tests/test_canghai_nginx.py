"""deploy/nginx's sample, run by a real nginx in front of a real canghai: auth_request asks
huoyan, the service gets X-Username, a missing token gets the admin pages' 401 JSON."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from canghai_helpers import SECRET

from butterfly_common.testing import ButterflyService, NginxSite, RedisServer

ROOT = Path(__file__).resolve().parents[3]
SAMPLE = ROOT / "deploy" / "nginx"
PASSWORD = "nginx-admin-pw-1"


@pytest.fixture(scope="module")
def front(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("nginx")
    with RedisServer() as redis:
        canghai = ButterflyService("canghai", {
            "BUTTERFLY_REDIS_URL": redis.url, "BUTTERFLY_SECRET_KEY": SECRET,
            "BUTTERFLY_TRUSTED_PROXIES": "127.0.0.1/32", "BUTTERFLY_WORKERS": "1",
            "CANGHAI_ADMIN_PASSWORD": PASSWORD, "CANGHAI_FLEET_FILE": str(tmp / "none.toml")})
        with canghai, NginxSite(SAMPLE / "butterfly-admin.conf", tmp, {
                "127.0.0.1:4400": f"127.0.0.1:{canghai.port}",
                "/srv/butterfly-admin": str(tmp)}) as nginx:
            yield nginx.url


def _token(front: str) -> str:
    r = requests.post(f"{front}/auth/ssologin", json={"username": "admin",
                                                      "password": PASSWORD}, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["data"]["butterfly_token"]


def test_no_token_gets_the_admin_pages_refusal(front: str) -> None:
    r = requests.get(f"{front}/canghai/queue_list", timeout=10)
    assert r.status_code == 401
    assert r.json() == {"success": False, "message": "You are not authorized",
                        "data": {"redirect": "/auth/ssologin"}}


@pytest.mark.parametrize("scheme", ["Bearer: ", "Bearer "])
def test_token_passes_and_the_service_sees_the_user(front: str, scheme: str) -> None:
    headers = {"Authorization": scheme + _token(front)}
    r = requests.get(f"{front}/canghai/queue_list", headers=headers, timeout=10)
    assert r.status_code == 200 and r.json() == {"stat": "OK", "data": {"queues": []}}
    # a write: canghai knows the caller from nginx's X-Username (the token was stripped)
    r = requests.post(f"{front}/canghai/queue_empty", headers=headers, timeout=10,
                      json={"queue_name": "/demo_api/hello", "registry_name": "failed"})
    assert r.json() == {"stat": "OK", "data": {"deleted_count": 0}}


def test_forged_username_header_does_not_help(front: str) -> None:
    r = requests.get(f"{front}/canghai/queue_list", headers={"X-Username": "admin"},
                     timeout=10)
    assert r.status_code == 401
