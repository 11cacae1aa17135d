"""The core service's demo apps, as the five-minute guide shows them."""

from __future__ import annotations

import json

import pytest

from butterfly_common.app import create_app
from butterfly_common.settings import load_settings
from butterfly_common.testing import RedisServer

TOKEN = "core-admin-token-0123456789"


@pytest.fixture(scope="module")
def redis_url():
    with RedisServer() as server:
        yield server.url


@pytest.fixture
def data_dir(tmp_path):
    data = tmp_path / "data"
    (data / "download").mkdir(parents=True)
    (data / "download" / "hello.txt").write_text("hello from the data dir\n")
    (tmp_path / "outside.txt").write_text("not yours")
    return data


@pytest.fixture
def client(tmp_path, data_dir, redis_url):
    settings = load_settings({"BUTTERFLY_LOG_DIR": str(tmp_path / "log"),
                              "BUTTERFLY_DATA_DIR": str(data_dir),
                              "BUTTERFLY_REDIS_URL": redis_url,
                              "BUTTERFLY_ADMIN_TOKEN": TOKEN})
    return create_app("core", settings).test_client()


def test_hello_byte_for_byte(client):
    response = client.get("/demo_api/hello?str_info=meetbill")
    assert response.status_code == 200
    assert response.data == b'{"stat": "OK", "str_info": "meetbill"}'
    assert response.headers["demo"] == "1.0.1"
    assert {"x-reqid", "x-cost", "butterfly"} <= {k.lower() for k, _ in response.headers.items()}


def test_hello_missing_param(client):
    response = client.get("/demo_api/hello")
    assert response.status_code == 400
    assert response.data == b'{"stat": "ERR_BAD_PARAMS"}'
    assert "str_info" in response.headers["x-reason"]


def test_ping_randstr(client):
    first = json.loads(client.get("/demo_api/ping").data)
    second = json.loads(client.get("/demo_api/ping").data)
    assert first["stat"] == "OK" and len(first["randstr"]) == 16
    assert first["randstr"] != second["randstr"]


def test_httpapi_statuses(client):
    assert client.get("/demo_httpapi/ping").data == b"pong"
    assert client.get("/demo_httpapi/teapot").status_code == 418
    response = client.get("/demo_httpapi/status?code=201")
    assert response.status_code == 201 and json.loads(response.data) == {"code": 201}
    assert client.get("/demo_httpapi/status?code=999").status_code == 400


def test_download_and_escapes(client):
    response = client.get("/demo_download/download_file?filename=hello.txt")
    assert response.status_code == 200 and response.data == b"hello from the data dir\n"
    assert response.headers["Content-Disposition"] == "attachment; filename=hello.txt"
    for name in ("../outside.txt", "/etc/passwd", "..%2foutside.txt"):
        refused = client.get("/demo_download/download_file", query_string={"filename": name})
        assert refused.status_code in (403, 404), name
        assert b"not yours" not in refused.data and b"root:" not in refused.data


def test_log_level_get_and_admin_set(client):
    assert json.loads(client.get("/demo_log/loglevel_get").data)["stat"] == "OK"
    assert client.post("/demo_log/loglevel_set", json={"level": "DEBUG"}).status_code == 401
    auth = {"Authorization": f"Bearer {TOKEN}"}
    bad = client.post("/demo_log/loglevel_set", json={"level": "LOUD"}, headers=auth)
    assert json.loads(bad.data) == {"stat": "ERR_BAD_PARAMS"}
    ok = client.post("/demo_log/loglevel_set",
                     json={"level": "warning", "logger": "butterfly.stack"}, headers=auth)
    assert json.loads(ok.data) == {"stat": "OK", "logger": "butterfly.stack", "level": "WARNING",
                                   "applies_to": "every worker of core",
                                   "version": json.loads(ok.data)["version"]}
    got = json.loads(client.get("/demo_log/loglevel_get?logger=butterfly.stack").data)
    assert got["level"] == "WARNING"


def test_stackdump_is_admin_only(client, tmp_path):
    assert client.get("/stackdump/stackdump").status_code == 401
    response = client.get("/stackdump/stackdump", headers={"Authorization": f"Bearer {TOKEN}"})
    body = json.loads(response.data)
    assert body["stat"] == "OK" and body["threads"] >= 1
    common = (tmp_path / "log" / "core" / "common.log.wf").read_text()
    assert response.headers["x-reqid"] in common and "test_stackdump_is_admin_only" in common
