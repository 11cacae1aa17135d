"""Refusal: the framework's one way to say no, answered like a bad parameter (docs/handlers.md
"Refusals"): the refusal's class, else the route's statuses, else 400; 200 in legacy."""

from __future__ import annotations

import json

import pytest

from butterfly_common import Refusal, mq
from butterfly_common.app import create_app
from butterfly_common.consumer import build_consumer
from butterfly_common.middleware import Middleware
from butterfly_common.mq import FINISHED
from butterfly_common.service import Service
from butterfly_common.settings import load_settings
from butterfly_common.testing import wait_until

from sample_handlers.refuse import StoreDown

AUDIT: list[tuple[str, str, object]] = []


class Hooks(Middleware):
    """A service's own middleware: maps an exception, refuses 13, audits every call."""

    def on_exception(self, req, route, exc: Exception) -> Refusal | None:
        if isinstance(exc, StoreDown):
            return Refusal("ERR_STORE_DOWN", f"store unavailable: {exc}", http=503)
        return None

    def before_handler(self, req, route, params) -> None:
        if params.get("n") == 13:
            raise Refusal("ERR_UNLUCKY", "13 is refused by the before_handler hook", http=403)
        req.log_res.add("checked=1")

    def after_call(self, req, route, outcome) -> None:
        AUDIT.append((req.method, route.path, outcome.stat))
        if route.path == "/refuse/ok" and outcome.stat == "OK":
            raise RuntimeError("an audit hook that fails must not change the answer")


HOOKED = Service(name="hooked", port=18001, handlers="sample_handlers", middleware=[Hooks()])


def answer(response) -> tuple[int, dict, str]:
    return (response.status_code, json.loads(response.data),
            response.headers.get("x-reason", ""))


def test_refusal_codes_follow_the_policy(client):
    assert answer(client.get("/refuse/plain?what=cup")) == (
        400, {"stat": "ERR_BAD_THING"}, "no such cup")
    assert answer(client.get("/refuse/classed")) == (
        409, {"stat": "ERR_WRONG_STATE", "state": "running"}, "already running")
    assert answer(client.get("/refuse/mapped")) == (404, {"stat": "ERR_GONE"}, "it went away")
    assert answer(client.get("/refuse/mapped?done=1")) == (
        200, {"stat": "ERR_NOT_YET", "progress": 0.5}, "not done yet; ask again")
    assert answer(client.get("/refuse/returned")) == (
        200, {"stat": "ERR_SOFT", "note": "returned"}, "")
    assert answer(client.get("/refuse/raw_refusal")) == (
        403, {"stat": "ERR_RAW"}, "raw handlers refuse in JSON too")


def test_unmapped_exception_is_still_a_500(client):
    status, body, reason = answer(client.get("/refuse/store_down"))
    assert (status, body, reason) == (500, {"stat": "ERR_SERVER_EXCEPTION"},
                                      "API Processing Exception")


def test_legacy_status_answers_refusals_with_200(make_app):
    client = make_app(BUTTERFLY_LEGACY_STATUS="1").test_client()
    for path, stat in (("/refuse/plain", "ERR_BAD_THING"), ("/refuse/classed",
                       "ERR_WRONG_STATE"), ("/refuse/mapped", "ERR_GONE")):
        status, body, reason = answer(client.get(path))
        assert (status, body["stat"]) == (200, stat) and reason


def test_refusal_rejects_success_codes():
    with pytest.raises(ValueError, match="4xx or 5xx"):
        Refusal("ERR_X", "why", http=200)
    assert repr(Refusal("ERR_X", "why")) == "Refusal('ERR_X', 'why')"


def hooked_client(tmp_path, redis_server, **env):
    base = {"BUTTERFLY_LOG_DIR": str(tmp_path / "log"),
            "BUTTERFLY_DATA_DIR": str(tmp_path / "data"),
            "BUTTERFLY_REDIS_URL": redis_server.url, **env}
    return create_app(HOOKED, load_settings(base)).test_client()


def test_hooks_see_every_call_and_map_exceptions(tmp_path, redis_server):
    client = hooked_client(tmp_path, redis_server)
    AUDIT.clear()
    assert answer(client.get("/refuse/store_down")) == (
        503, {"stat": "ERR_STORE_DOWN"}, "store unavailable: connection refused")
    assert answer(client.get("/refuse/ok?n=13")) == (
        403, {"stat": "ERR_UNLUCKY"}, "13 is refused by the before_handler hook")
    assert answer(client.get("/refuse/ok?n=2")) == (200, {"stat": "OK", "n": 2, "user": "-"},
                                                     "")
    assert answer(client.get("/refuse/plain"))[0] == 400
    assert AUDIT == [("GET", "/refuse/store_down", "ERR_STORE_DOWN"),
                     ("GET", "/refuse/ok", "ERR_UNLUCKY"), ("GET", "/refuse/ok", "OK"),
                     ("GET", "/refuse/plain", "ERR_BAD_THING")]


def test_queue_calls_go_through_the_same_hooks(tmp_path, redis_server):
    settings = load_settings({"BUTTERFLY_LOG_DIR": str(tmp_path / "log"),
                              "BUTTERFLY_DATA_DIR": str(tmp_path / "data"),
                              "BUTTERFLY_REDIS_URL": redis_server.url,
                              "BUTTERFLY_CONSUME_TOPICS": "/refuse/ok,/refuse/classed"})
    consumer = build_consumer(HOOKED, settings).start()
    AUDIT.clear()
    try:
        refused = mq.publish("/refuse/classed", {}).msg_id
        unlucky = mq.publish("/refuse/ok", {"n": 13}).msg_id
        fine = mq.publish("/refuse/ok", {"n": 1}).msg_id
        done = {m: mq.wait(m, 10) for m in (refused, unlucky, fine)}
    finally:
        consumer.stop()
    assert all(m is not None and m.status == FINISHED for m in done.values())
    assert done[refused].result == {"stat": "ERR_WRONG_STATE", "state": "running"}
    assert done[unlucky].result == {"stat": "ERR_UNLUCKY"}
    assert done[fine].result == {"stat": "OK", "n": 1, "user": "-"}
    wait_until(lambda: len(AUDIT) == 3, 5, what="three audited queue calls")
    assert {(method, path) for method, path, _ in AUDIT} == {
        ("QUEUE", "/refuse/classed"), ("QUEUE", "/refuse/ok")}
