"""demo_async_job: a job published over HTTP, run step by step by core's consumer, its
progress polled through ``status`` until it is done."""

from __future__ import annotations

import pytest
import requests

from butterfly_common.testing import RedisServer, wait_until

TOKEN = "core-async-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def core():
    """``butterfly serve core`` consuming its own topics (real gunicorn, real Redis)."""
    from butterfly_common.testing import ButterflyService

    with RedisServer() as redis_server, ButterflyService("core", {
            "BUTTERFLY_REDIS_URL": redis_server.url, "BUTTERFLY_ADMIN_TOKEN": TOKEN,
            "BUTTERFLY_CONSUME": "1", "BUTTERFLY_CONSUME_MAX_IDLE": "0.05",
            "BUTTERFLY_WORKERS": "1"}) as svc:
        yield svc.url


def _status(base: str, msg_id: str) -> dict:
    reply = requests.get(f"{base}/demo_async_job/status", params={"msg_id": msg_id},
                         timeout=10)
    assert reply.status_code == 200, reply.text
    return reply.json()["data"]


def test_job_reports_progress_until_done(core):
    reply = requests.post(f"{core}/demo_async_job/submit", headers=AUTH, timeout=10,
                          json={"steps": 8, "step_ms": 150, "label": "backup"})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["stat"] == "OK" and body["data"]["topic"] == "/demo_async_job/run"
    msg_id = body["data"]["msg_id"]

    def midway():
        data = _status(core, msg_id)
        progress = data["progress"]
        return data if progress and 0 < progress["done"] < progress["total"] else None

    seen = wait_until(midway, 30, interval=0.02, what="progress strictly between 0 and 8")
    assert seen["status"] == "started" and seen["progress"]["total"] == 8
    assert seen["progress"]["note"] == f"backup: step {seen['progress']['done']} of 8"
    assert seen["result"] is None

    done = wait_until(lambda: (d := _status(core, msg_id))["status"] == "finished" and d,
                      30, what="the job finished")
    assert done["progress"] == {"done": 8, "total": 8, "note": "backup: step 8 of 8"}
    assert done["result"]["stat"] == "OK"
    assert done["result"]["data"]["steps"] == 8 and len(done["result"]["data"]["digest"]) == 64
    assert done["attempts"] == 1 and done["error"] == ""


@pytest.mark.parametrize("params", [
    {"steps": 0}, {"steps": 101}, {"steps": "many"}, {"step_ms": -1}, {"step_ms": 1001},
    {"label": "x" * 65}, {"label": "bad\nlabel"},
])
def test_bad_job_params_are_param_errors(core, params):
    reply = requests.post(f"{core}/demo_async_job/submit", headers=AUTH, json=params,
                          timeout=10)
    assert reply.status_code == 400, reply.text
    assert reply.json()["stat"] == "ERR_BAD_PARAMS" and reply.headers["x-reason"]


def test_status_refusals(core):
    for msg_id, code, stat in (("0" * 24, 404, "ERR_MSG_NOT_FOUND"),
                               ("has space", 400, "ERR_BAD_PARAMS"),
                               ("x" * 201, 400, "ERR_BAD_PARAMS")):
        reply = requests.get(f"{core}/demo_async_job/status", params={"msg_id": msg_id},
                             timeout=10)
        assert (reply.status_code, reply.json()["stat"]) == (code, stat), msg_id
    assert requests.get(f"{core}/demo_async_job/status", timeout=10).status_code == 400


def test_submit_needs_a_credential_and_run_needs_the_queue(core):
    reply = requests.post(f"{core}/demo_async_job/submit", json={"steps": 1}, timeout=10)
    assert reply.status_code == 401
    reply = requests.get(f"{core}/demo_async_job/run", params={"steps": 1}, timeout=10)
    assert (reply.status_code, reply.json()["stat"]) == (400, "ERR_QUEUE_ONLY")
    assert "submit" in reply.headers["x-reason"]


def test_no_worker_is_a_conflict_not_a_5xx(service_client):
    with RedisServer() as lonely:
        client = service_client("core", BUTTERFLY_REDIS_URL=lonely.url,
                                BUTTERFLY_ADMIN_TOKEN=TOKEN)
        reply = client.post("/demo_async_job/submit", json={"steps": 1}, headers=AUTH)
        assert (reply.status_code, reply.get_json()["stat"]) == (409, "ERR_NO_CONSUMER")


def test_butterfly_call_runs_the_job_in_place(tmp_path):
    """``butterfly call`` (a developer's local run) may run the job: it holds no web worker."""
    import os
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "butterfly_common.cli", "call", "/demo_async_job/run",
         "steps=3", "step_ms=0", "label=local"], cwd=tmp_path, capture_output=True,
        text=True, timeout=60, env={**os.environ, "BUTTERFLY_LOG_DIR": str(tmp_path)},
        check=False)
    assert result.returncode == 0, result.stderr
    assert "'OK'" in result.stdout and "'steps': 3" in result.stdout
