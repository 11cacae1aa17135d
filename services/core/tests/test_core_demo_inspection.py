"""demo_inspection: a python-statemachine inspection whose state lives in a real wuxing."""

from __future__ import annotations

import threading

import pytest

from butterfly_common.app import create_app
from butterfly_common.settings import load_settings
from butterfly_common.testing import ButterflyService, RedisServer, free_port

TOKEN = "core-inspection-token-0123"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def wuxing(tmp_path_factory):
    with RedisServer() as redis_server:
        db_url = f"sqlite:///{tmp_path_factory.mktemp('wx') / 'wuxing.db'}"
        with ButterflyService("wuxing", {"BUTTERFLY_REDIS_URL": redis_server.url,
                                         "BUTTERFLY_DB_URL": db_url,
                                         "BUTTERFLY_ADMIN_TOKEN": TOKEN}) as svc:
            yield svc, redis_server.url


def _core(tmp_path, redis_url, wuxing_url):
    """core's app on settings that name wuxing's URL (the process environment does not)."""
    settings = load_settings({"BUTTERFLY_LOG_DIR": str(tmp_path / "log"),
                              "BUTTERFLY_REDIS_URL": redis_url,
                              "BUTTERFLY_WUXING_URL": wuxing_url,
                              "BUTTERFLY_ADMIN_TOKEN": TOKEN})
    return create_app("core", settings).test_client()


@pytest.fixture
def core(wuxing, tmp_path, monkeypatch):
    svc, redis_url = wuxing
    monkeypatch.delenv("BUTTERFLY_WUXING_URL", raising=False)
    return _core(tmp_path, redis_url, svc.url)


def _post(client, handler, **params):
    reply = client.post(f"/demo_inspection/{handler}", json=params, headers=AUTH)
    return reply.status_code, reply.get_json(), reply.headers.get("x-reason", "")


def test_an_inspection_runs_through_its_states(core):
    assert _post(core, "start", target="web1")[1]["stat"] == "OK"
    assert _post(core, "start", target="web1")[1]["stat"] == "ERR_INSTANCE_IS_EXIST"
    for event, state in (("start", "checking"), ("fail", "failed"), ("retry", "checking"),
                         ("pass", "passed")):
        _, body, reason = _post(core, "advance", target="web1", event=event)
        assert body["stat"] == "OK", (event, body, reason)
        assert body["data"]["state"] == state
    status, body, reason = _post(core, "advance", target="web1", event="fail")
    assert (status, body["stat"]) == (409, "ERR_TRANSITION_NOT_ALLOWED") and "passed" in reason
    status = core.get("/demo_inspection/status?target=web1").get_json()["data"]
    assert status["state"] == "passed" and status["attempts"] == 2
    assert status["log"].splitlines() == ["pending --start--> checking",
                                          "checking --fail--> failed",
                                          "failed --retry--> checking",
                                          "checking --pass--> passed"]
    assert _post(core, "advance", target="web1", event="jump")[1]["stat"] == "ERR_EVENT_UNKNOWN"
    assert core.get("/demo_inspection/status?target=nope").get_json()["stat"] \
        == "ERR_INSTANCE_IS_NOT_EXIST"
    # writes need a credential like every write action
    assert core.post("/demo_inspection/start", json={"target": "x"}).status_code == 401


def test_an_unreachable_wuxing_is_a_failed_dependency(wuxing, tmp_path):
    dead = _core(tmp_path, wuxing[1], f"http://127.0.0.1:{free_port()}")
    status, body, reason = _post(dead, "start", target="web1")
    assert (status, body["stat"]) == (424, "ERR_UNAVAILABLE") and "unreachable" in reason
    assert dead.get("/demo_inspection/status?target=web1").status_code == 424


def test_concurrent_advances_apply_once(core):
    """Two clients fire ``start`` at once: revision CAS lets exactly one transition win."""
    _post(core, "start", target="race")
    results = []

    def fire():
        client = core.application.test_client()
        results.append(_post(client, "advance", target="race", event="start")[1]["stat"])

    threads = [threading.Thread(target=fire) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count("OK") == 1, results
    assert set(results) <= {"OK", "ERR_ITEM_UPDATE_FAILED", "ERR_TRANSITION_NOT_ALLOWED"}
    status = core.get("/demo_inspection/status?target=race").get_json()["data"]
    assert status["state"] == "checking" and status["attempts"] == 1
