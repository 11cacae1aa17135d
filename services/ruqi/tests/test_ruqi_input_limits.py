"""Issue 12, defect 9 (ruqi's part): inputs that used to answer 500 are 4xx with a reason.

Through the real app on SQLite and on a private MariaDB database.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from butterfly_common import db
from butterfly_common.app import create_app
from butterfly_common.redis_client import make_redis
from butterfly_common.settings import load_settings
from butterfly_ruqi import service

OPERATOR = "operator-token-0123456789"
AUTH = {"Authorization": f"Bearer {OPERATOR}"}
JOB = {"job_trigger": "interval", "job_id": "lim", "job_name": "lim", "rule": "1h",
       "cmd": "/demo_api/hello"}


@pytest.fixture
def client(redis_server, db_url: str, tmp_path: Path) -> Iterator:
    make_redis(redis_server.url).flushall()
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    (scripts / "ok.sh").write_text("echo ok\n")
    settings = load_settings({"BUTTERFLY_REDIS_URL": redis_server.url, "BUTTERFLY_DB_URL": db_url,
                              "BUTTERFLY_DATA_DIR": str(tmp_path / "data"),
                              "RUQI_TIMEZONE": "UTC", "BUTTERFLY_LOG_DIR": "-",
                              "BUTTERFLY_OPERATOR_TOKEN": OPERATOR,
                              "RUQI_SCRIPT_DIR": str(scripts)})
    app = create_app("ruqi", settings)
    service.setup(settings)
    yield app.test_client()
    db.database.close()


def add(client, **change):
    resp = client.post("/ruqi/add_job", json={**JOB, **change}, headers=AUTH)
    return resp, resp.get_json()


@pytest.mark.parametrize(("change", "stat", "reason"), [
    ({"cmd": "bash ok.sh\x00--x"}, "ERR_BAD_CMD", "control character"),
    ({"cmd": "bash ok\x00.sh"}, "ERR_BAD_CMD", "control character"),
    ({"cmd": "http://127.0.0.1:8585/\x00"}, "ERR_BAD_CMD", "control character"),
    # beyond 64 bits the framework's int binding refuses it before ruqi's range check
    ({"misfire_grace_time": 10**30}, "ERR_BAD_PARAMS", "misfire_grace_time"),
    ({"misfire_grace_time": 2**63}, "ERR_BAD_PARAMS", "misfire_grace_time"),
    ({"rule": "99999999999999999999d"}, "ERR_BAD_RULE", "interval"),
    ({"rule": "99999999999d"}, "ERR_BAD_RULE", "ten years"),
    ({"timeout": 1e308}, "ERR_BAD_JOB", "timeout"),
    ({"job_trigger": "date", "rule": "9999-12-31 23:59:59", "timezone": "Etc/GMT+12"},
     "ERR_BAD_RULE", "before 9000"),
    ({"job_trigger": "date", "rule": "8999-12-31 23:59:59", "timezone": "Etc/GMT+12"},
     None, None),
    ({"job_id": "a\x00b"}, "ERR_BAD_JOB", "job_id"),
    ({"timezone": "UTC\x00"}, "ERR_BAD_TIMEZONE", "timezone"),
    ({"timezone": "x" * 100}, "ERR_BAD_TIMEZONE", "timezone"),
])
def test_defect_09_bad_job_input_is_4xx_with_a_reason(client, change, stat, reason):
    resp, body = add(client, **change)
    if stat is None:  # the far edge of what is valid still works
        assert resp.status_code == 200, (body, resp.headers.get("x-reason"))
        return
    assert 400 <= resp.status_code < 500, (change, resp.status_code)
    assert body["stat"] == stat
    assert reason in resp.headers["x-reason"]


@pytest.mark.parametrize("path", ["get_jobs", "get_history", "job_list", "job_history_list"])
@pytest.mark.parametrize("page_index", [10**20, 2**63 - 1, 2**63, 1_000_001, 0, -1])
def test_defect_09_page_index_out_of_range_is_bad_params(client, path, page_index):
    resp = client.get(f"/ruqi/{path}?page_index={page_index}")
    assert resp.status_code == 400, resp.status_code
    assert resp.get_json()["stat"] == "ERR_BAD_PARAMS" and resp.headers["x-reason"]


def test_defect_09_lists_are_paged_by_default(client):
    for i in range(20):
        assert add(client, job_id=f"p{i:02d}")[0].status_code == 200
    body = client.get("/ruqi/get_jobs").get_json()
    assert body["data"]["total"] == 20 and len(body["data"]["list"]) == 15
    body = client.get("/ruqi/get_jobs?page_index=2").get_json()
    assert len(body["data"]["list"]) == 5
    assert client.get("/ruqi/get_history").get_json()["data"]["list"] == []


def test_lists_accept_order_by_for_the_listed_columns(client):
    for job_id, name in (("b", "zeta"), ("a", "alpha"), ("c", "mid")):
        assert add(client, job_id=job_id, job_name=name)[0].status_code == 200
    ids = lambda q: [j["job_id"] for j in client.get(f"/ruqi/get_jobs?{q}")  # noqa: E731
                     .get_json()["data"]["list"]]
    assert ids("orderBy=job_id&orderDir=asc") == ["a", "b", "c"]
    assert ids("orderBy=job_id&orderDir=desc") == ["c", "b", "a"]
    assert ids("orderBy=job_name") == ["a", "c", "b"]
    assert ids("orderBy=job_name&orderDir=desc") == ["b", "c", "a"]
    for query in ("orderBy=cmd", "orderBy=__class__", "orderBy=id;drop", "orderDir=sideways",
                  "orderBy=job_id&orderDir=up"):
        resp = client.get(f"/ruqi/get_jobs?{query}")
        assert resp.status_code == 400 and resp.get_json()["stat"] == "ERR_BAD_PARAMS", query
    assert client.get("/ruqi/job_history_list?orderBy=scheduled_time&orderDir=desc"
                      ).status_code == 200
    assert client.get("/ruqi/get_history?orderBy=cmd_output").status_code == 400
