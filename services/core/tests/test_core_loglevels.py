"""Log levels: only existing loggers (issue 12 defect 13), and one level for every worker.

The every-worker behaviour through real gunicorn is tests/integration/test_first_run.py;
here one process stands for a worker that did not take the request.
"""

from __future__ import annotations

import json
import logging
import time
import uuid

import pytest

from butterfly_common import runtime
from butterfly_common.app import create_app
from butterfly_common.settings import load_settings
from butterfly_common.testing import RedisServer, wait_until
from butterfly_core import loglevels

TOKEN = "core-admin-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def client(tmp_path, monkeypatch):
    # a fresh Redis starts its version at 0, as a fresh worker does: without this, the
    # version an earlier test's worker applied could equal the new store's first bump
    monkeypatch.setattr(loglevels, "_applied", 0)
    with RedisServer() as server:
        settings = load_settings({"BUTTERFLY_LOG_DIR": str(tmp_path / "log"),
                                  "BUTTERFLY_DATA_DIR": str(tmp_path / "data"),
                                  "BUTTERFLY_REDIS_URL": server.url,
                                  "BUTTERFLY_ADMIN_TOKEN": TOKEN})
        yield create_app("core", settings).test_client()
    logging.getLogger("butterfly.stack").setLevel(logging.NOTSET)


def test_defect_13_loglevel_get_refuses_unknown_loggers(client):
    names = [f"nosuch.{uuid.uuid4().hex}" for _ in range(50)]
    for name in names:
        reply = client.get("/demo_log/loglevel_get", query_string={"logger": name})
        assert reply.status_code == 400, name
        assert json.loads(reply.data) == {"stat": "ERR_BAD_PARAMS"}
        assert reply.headers["x-reason"].startswith("unknown logger: 'nosuch.")
    assert not set(names) & set(logging.root.manager.loggerDict)  # nothing was created


def test_defect_13_loglevel_set_refuses_unknown_loggers(client):
    name = f"nosuch.{uuid.uuid4().hex}"
    reply = client.post("/demo_log/loglevel_set", json={"level": "DEBUG", "logger": name},
                        headers=AUTH)
    assert reply.status_code == 400 and "unknown logger" in reply.headers["x-reason"]
    assert name not in logging.root.manager.loggerDict


def test_existing_loggers_and_their_parents_answer(client):
    for name in ("", "root", "butterfly.stack", "butterfly"):  # "butterfly": a parent
        reply = json.loads(client.get("/demo_log/loglevel_get",
                                      query_string={"logger": name}).data)
        assert reply["stat"] == "OK" and reply["logger"] == (name or "root")


def test_a_level_set_elsewhere_reaches_this_worker(client):
    stack = logging.getLogger("butterfly.stack")
    before = json.loads(client.get("/demo_log/loglevel_get?logger=butterfly.stack").data)
    assert before["level"] == "NOTSET"
    # another worker's loglevel_set, as it reaches Redis: the hash field and the version
    runtime.get_redis().hset(loglevels.KEY, "butterfly.stack", "ERROR")
    loglevels.version().bump()
    got = json.loads(client.get("/demo_log/loglevel_get?logger=butterfly.stack").data)
    assert got == {"stat": "OK", "logger": "butterfly.stack", "level": "ERROR"}
    assert stack.level == logging.ERROR


def test_set_answers_its_scope_and_unknown_fields_are_ignored(client):
    runtime.get_redis().hset(loglevels.KEY, "nosuch.planted", "DEBUG")
    reply = client.post("/demo_log/loglevel_set",
                        json={"level": "warning", "logger": "butterfly.stack"}, headers=AUTH)
    body = json.loads(reply.data)
    assert body["applies_to"] == "every worker of core" and body["version"] >= 1
    loglevels.sync()
    assert "nosuch.planted" not in logging.root.manager.loggerDict


def test_the_sync_loop_applies_levels_set_elsewhere_without_a_read(client):
    stack = logging.getLogger("butterfly.stack")
    stop = loglevels.start_sync(runtime.get_settings())
    try:
        runtime.get_redis().hset(loglevels.KEY, "butterfly.stack", "CRITICAL")
        loglevels.version().bump()  # another worker's loglevel_set; nobody reads here
        wait_until(lambda: stack.level == logging.CRITICAL, 5, what="the loop applies it")
    finally:
        started = time.monotonic()
        stop()
        assert time.monotonic() - started < 1.0  # woken, not after its half-second poll
