"""The HTTP API through the real framework app: names, aliases, shapes, refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from butterfly_common import db
from butterfly_common.app import create_app
from butterfly_common.redis_client import make_redis
from butterfly_common.settings import load_settings
from butterfly_common.testing import wait_until
from butterfly_ruqi import service

JOB = {"job_trigger": "interval", "job_id": "api1", "job_name": "demo",
       "cmd": "http://127.0.0.1:9/x", "rule": "10s"}


OPERATOR = "operator-token-0123456789"
AUTH = {"Authorization": f"Bearer {OPERATOR}"}
#: removal is an admin's (the console's role table)
ADMIN = "admin-token-0123456789abc"
ADMIN_ONLY = ("remove_job", "job_remove")


def make_client(redis_url: str, db_url: str, **extra: str):
    settings = load_settings({"BUTTERFLY_REDIS_URL": redis_url, "BUTTERFLY_DB_URL": db_url,
                              "RUQI_TIMEZONE": "UTC", "BUTTERFLY_LOG_DIR": "-",
                              "BUTTERFLY_OPERATOR_TOKEN": OPERATOR,
                              "BUTTERFLY_ADMIN_TOKEN": ADMIN,
                              "RUQI_HTTP_ALLOW": "127.0.0.1", **extra})
    app = create_app("ruqi", settings)
    service.setup(settings)
    return app.test_client()


@pytest.fixture
def client(redis_server, tmp_path: Path):
    make_redis(redis_server.url).flushall()
    yield make_client(redis_server.url, f"sqlite:///{tmp_path / 'api.db'}")
    db.database.close()


def post(client, path: str, **data):
    headers = {"Authorization": f"Bearer {ADMIN}"} if path in ADMIN_ONLY else AUTH
    resp = client.post(f"/ruqi/{path}", json=data, headers=headers)
    return resp, resp.get_json()


def test_add_get_list_and_aliases(client):
    resp, body = post(client, "add_job", **JOB)
    assert resp.status_code == 200 and body["stat"] == "OK"
    assert body["data"]["job_id"] == "api1" and body["data"]["next_run_time"]
    for path in ("get_job", "job_show"):
        _, body = post(client, path, job_id="api1")
        assert body["stat"] == "OK"
        data = body["data"]
        assert (data["job_trigger"], data["rule"], data["cmd"]) == ("interval", "10s", JOB["cmd"])
        assert data["misfire_grace_time"] == 30 and data["overlap"] == "allow"
    for path in ("get_jobs", "job_list"):
        body = client.get(f"/ruqi/{path}?page_index=1&page_size=5").get_json()
        assert body["stat"] == "OK"
        assert body["data"]["total"] == 1 and body["data"]["list"][0]["job_id"] == "api1"
    _, body = post(client, "job_add", **{**JOB, "job_id": "api2", "overlap": "forbid",
                                         "timeout": 5, "coalesce": True})
    assert body["stat"] == "OK" and body["data"]["overlap"] == "forbid"
    body = client.get("/ruqi/get_jobs?job_name=demo").get_json()
    assert body["data"]["total"] == 2


def test_modify_pause_resume_remove(client):
    post(client, "add_job", **JOB)
    _, body = post(client, "modify_job", **{**JOB, "rule": "0 0 9 * * *", "job_trigger": "cron"})
    assert body["stat"] == "OK" and body["data"]["job_trigger"] == "cron"
    assert body["data"]["next_run_time"].endswith("09:00:00.000")
    _, body = post(client, "job_pause", job_id="api1")
    assert body["stat"] == "OK"
    assert post(client, "get_job", job_id="api1")[1]["data"]["next_run_time"] is None
    _, body = post(client, "resume_job", job_id="api1")
    assert body["stat"] == "OK" and body["data"]["next_run_time"]
    assert post(client, "job_remove", job_id="api1")[1]["stat"] == "OK"
    resp, body = post(client, "get_job", job_id="api1")
    assert body["stat"] == "ERR_JOB_NOT_FOUND" and "api1" in resp.headers["x-reason"]


@pytest.mark.parametrize(("change", "stat", "reason"), [
    ({"job_trigger": "weekly"}, "ERR_BAD_TRIGGER", "job_trigger"),
    ({"rule": "10 parsecs"}, "ERR_BAD_RULE", "interval"),
    ({"job_trigger": "cron", "rule": "* * *"}, "ERR_BAD_RULE", "cron"),
    ({"job_trigger": "date", "rule": "someday"}, "ERR_BAD_RULE", "date"),
    ({"job_trigger": "date", "rule": "2001-01-01 00:00:00"}, "ERR_BAD_RULE", "past"),
    ({"cmd": "http://x/" + "a" * 5000}, "ERR_CMD_TOO_LONG", "limit"),
    ({"cmd": "bash cleanup.sh"}, "ERR_SCRIPT_DISABLED", "RUQI_SCRIPT_DIR"),
    ({"timezone": "Mars/Base"}, "ERR_BAD_TIMEZONE", "timezone"),
    ({"overlap": "replace"}, "ERR_BAD_JOB", "overlap"),
    ({"job_id": "has space"}, "ERR_BAD_JOB", "job_id"),
])
def test_bad_input_answers_a_stat_and_a_reason(client, change, stat, reason):
    resp, body = post(client, "add_job", **{**JOB, **change})
    assert body["stat"] == stat
    assert reason in resp.headers["x-reason"]


def test_duplicate_and_unknown_jobs(client):
    post(client, "add_job", **JOB)
    resp, body = post(client, "add_job", **JOB)
    assert body["stat"] == "ERR_JOB_EXIST" and "already exists" in resp.headers["x-reason"]
    assert resp.status_code == 409
    for path in ("modify_job", "job_modify"):
        resp, body = post(client, path, **{**JOB, "job_id": "nope"})
        assert body["stat"] == "ERR_JOB_NOT_FOUND"
    for path in ("remove_job", "pause_job", "resume_job", "run_job", "job_show"):
        resp, body = post(client, path, job_id="nope")
        assert body["stat"] == "ERR_JOB_NOT_FOUND", path
        assert resp.headers["x-reason"]
        assert resp.status_code == 404, path


def test_bad_paging_is_bad_params(client):
    resp = client.get("/ruqi/get_jobs?page_index=0")
    assert resp.get_json()["stat"] == "ERR_BAD_PARAMS"
    resp = client.get("/ruqi/get_history?page_index=1&page_size=5000")
    assert resp.get_json()["stat"] == "ERR_BAD_PARAMS"


def test_missing_and_unknown_params_are_bad_params(client):
    resp, body = post(client, "add_job", job_id="x")
    assert resp.status_code == 400 and body["stat"] == "ERR_BAD_PARAMS"
    resp, body = post(client, "get_job", job_id="x", bogus=1)
    assert body["stat"] == "ERR_BAD_PARAMS"


def test_script_jobs_need_a_path_inside_the_dir(redis_server, tmp_path):
    make_redis(redis_server.url).flushall()
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    (scripts / "ok.sh").write_text("echo ok\n")
    client = make_client(redis_server.url, f"sqlite:///{tmp_path / 's.db'}",
                         RUQI_SCRIPT_DIR=str(scripts))
    try:
        _, body = post(client, "add_job", **{**JOB, "cmd": "bash ok.sh --flag"})
        assert body["stat"] == "OK"
        resp, body = post(client, "add_job", **{**JOB, "job_id": "esc",
                                                "cmd": "bash ../../etc/passwd"})
        assert body["stat"] == "ERR_SCRIPT_PATH" and "outside" in resp.headers["x-reason"]
    finally:
        db.database.close()


def test_history_status_and_wakeup(client, engines, callee):
    _, body = post(client, "add_job", **{**JOB, "cmd": f"{callee.url}/h", "rule": "1h"})
    engines.start(1)
    _, body = post(client, "run_job", job_id="api1")
    assert body["stat"] == "OK" and body["data"]["reqid"]
    reqid = body["data"]["reqid"]
    wait_until(lambda: client.get("/ruqi/get_history?job_id=api1").get_json()["data"]["total"],
               timeout=5)
    for path in ("get_history", "job_history_list"):
        body = client.get(f"/ruqi/{path}?job_id=api1&is_success=yes&page_index=1").get_json()
        row = body["data"]["list"][0]
        assert row["reqid"] == reqid and row["status"] == "ok" and row["cmd_is_success"]
    assert client.get("/ruqi/get_history?is_success=no").get_json()["data"]["total"] == 0
    assert callee.of("api1")[0]["reqid"] == reqid
    body = client.get("/ruqi/status").get_json()
    assert body["stat"] == "OK"
    assert {"wait_seconds", "check_time", "next_wakeup_time"} <= set(body["data"])
    assert client.get("/ruqi/wakeup", headers=AUTH).get_json()["stat"] == "OK"


def test_check_rule_answers_next_fires_and_stores_nothing(client):
    body = client.get("/ruqi/check_rule?job_trigger=cron&rule=0 3 * * *&count=5").get_json()
    assert body["stat"] == "OK"
    fires = body["data"]["next_fire_times"]
    assert len(fires) == 5 and all(f.endswith("03:00:00.000") for f in fires)
    assert fires == sorted(fires) and len(set(fires)) == 5
    body = client.get("/ruqi/check_rule?job_trigger=date&rule=2000-01-01").get_json()
    # a date fires once (APScheduler hands a past date back: ruqi's misfire grace decides)
    assert body["data"]["next_fire_times"] == ["2000-01-01 00:00:00.000"]
    resp = client.get("/ruqi/check_rule?job_trigger=interval&rule=every second")
    assert resp.status_code == 400 and resp.get_json()["stat"] == "ERR_BAD_RULE"
    assert "interval rule" in resp.headers["x-reason"]
    resp = client.get("/ruqi/check_rule?job_trigger=interval&rule=1s&count=21")
    assert resp.status_code == 400
    assert client.get("/ruqi/get_jobs").get_json()["data"]["total"] == 0


def test_check_rule_checks_the_options_as_add_job_would(client):
    """The console validates the form's options as you type: add_job's own refusals, the
    times within the bounds, jittered for the job id; nothing stored."""
    q = "/ruqi/check_rule?job_trigger=interval&rule=1h"
    for bad, reason in (("jitter=4000", "jitter must be 0..3600"),
                        ("jitter=3600", "shorter than the time"),
                        ("catchup_window=604801", "catchup_window must be 0..604800"),
                        ("pause_on_failure=1001", "pause_on_failure must be 0..1000"),
                        ("start_at=tomorrow", "start_at 'tomorrow'"),
                        ("start_at=2031-01-02 00:00:00&end_at=2031-01-01 00:00:00",
                         "end_at must be later than start_at"),
                        ("overlap=sometimes", "overlap must be one of"),
                        ("timeout=0", "timeout must be in")):
        resp = client.get(f"{q}&{bad}")
        assert resp.status_code == 400 and reason in resp.headers["x-reason"], bad
    body = client.get(f"{q}&start_at=2031-01-01 00:00:00&end_at=2031-01-01 03:30:00"
                      "&catchup_window=600&count=10").get_json()
    assert body["stat"] == "OK", body
    assert body["data"]["next_fire_times"] == [f"2031-01-01 0{h}:00:00.000" for h in range(4)]
    assert body["data"]["options"]["catchup_window"] == 600
    assert body["data"]["options"]["end_at"].startswith("2031-01-01 03:30:00")
    jittered = client.get(f"{q}&start_at=2031-01-01 00:00:00&jitter=60&job_id=j1").get_json()
    fires = jittered["data"]["next_fire_times"]
    assert jittered["data"]["jittered"] and fires[0].startswith("2031-01-01 00:0")
    assert any(not f.endswith(":00:00.000") for f in fires)  # the jitter moved some
    assert client.get("/ruqi/get_jobs").get_json()["data"]["total"] == 0
