"""The middleware chain (docs/architecture.md, "The middleware chain"): which hooks run, in
which order, for HTTP calls, queue messages, publishes and the server's lifecycle; the
framework's own middleware (role check, access log) stay in force around a service's."""

from __future__ import annotations

import json
import os
import signal
import uuid
from pathlib import Path

import pytest
import requests

from butterfly_common import Middleware, Refusal, mq
from butterfly_common.app import create_app
from butterfly_common.config import SettingsError
from butterfly_common.metrics import UNKNOWN_ROUTE
from butterfly_common.middleware import Chain, active, install, load_named
from butterfly_common.middleware.defaults import default_middleware
from butterfly_common.mq import FAILED, FINISHED
from butterfly_common.runtime import configure
from butterfly_common.service import Service
from butterfly_common.settings import load_settings
from butterfly_common.testing import ButterflyService, RedisServer, wait_until

TESTS = Path(__file__).parent


class Recorder(Middleware):
    """Writes ``(name, hook, what)`` for every hook into a shared list."""

    def __init__(self, name: str, seen: list[tuple[str, str, str]]) -> None:
        self.name = name
        self.seen = seen

    def _add(self, hook: str, what: str) -> None:
        self.seen.append((self.name, hook, what))

    def before_call(self, req, route) -> None:
        self._add("before_call", route.path)

    def before_handler(self, req, route, params) -> None:
        self._add("before_handler", route.path)
        if params.get("a") == 13:
            raise Refusal("ERR_UNLUCKY", "13 is refused", http=429)

    def on_refusal(self, req, route, refusal) -> None:
        self._add("on_refusal", refusal.stat)

    def after_call(self, req, route, outcome) -> None:
        self._add("after_call", outcome.stat if outcome is not None else "-")

    def after_answer(self, req, outcome, label) -> None:
        self._add("after_answer", label)

    def before_publish(self, topic, data, options) -> None:
        self._add("before_publish", topic)
        options.setdefault("msg_id", f"{self.name}-{data['n']}")

    def after_publish(self, topic, data, result) -> None:
        self._add("after_publish", result.msg_id)

    def before_process(self, msg, req) -> None:
        self._add("before_process", msg.id)

    def after_process(self, msg, req, outcome) -> None:
        self._add("after_process", msg.id)

    def on_retry(self, msg, req, outcome) -> None:
        self._add("on_retry", msg.id)

    def on_dead_letter(self, msg, req, outcome) -> None:
        self._add("on_dead_letter", msg.id)

    def on_timeout(self, msg, req) -> None:
        self._add("on_timeout", msg.id)


class OnlyAudit(Middleware):
    def after_call(self, req, route, outcome) -> None:
        pass


def test_the_chain_lists_per_hook_only_the_middleware_that_override_it():
    seen: list = []
    a, b, audit, plain = Recorder("a", seen), Recorder("b", seen), OnlyAudit(), Middleware()
    chain = Chain([a, audit, b, plain])
    assert chain.before_call == (a, b)  # chain order
    assert chain.after_call == (b, audit, a)  # reverse order: the first is outermost
    assert chain.on_boot == () and len(chain) == 4
    with pytest.raises(TypeError, match="not a butterfly Middleware"):
        Chain([object()])  # type: ignore[list-item]


@pytest.fixture
def recorded(tmp_path, redis_server):
    """A service with two recorders around the sample handlers: ``(client, seen, log_dir)``."""
    seen: list[tuple[str, str, str]] = []
    service = Service(name="mw", port=18002, handlers="sample_handlers",
                      middleware=[Recorder("a", seen), Recorder("b", seen)])
    settings = load_settings({"BUTTERFLY_LOG_DIR": str(tmp_path / "log"),
                              "BUTTERFLY_DATA_DIR": str(tmp_path / "data"),
                              "BUTTERFLY_REDIS_URL": redis_server.url,
                              "BUTTERFLY_ADMIN_TOKEN": "a" * 32,
                              "BUTTERFLY_MIDDLEWARE": "sample_middleware:Stamp"})
    yield create_app(service, settings).test_client(), seen, tmp_path / "log" / "mw"
    install(Chain())


def access_lines(log_dir: Path) -> list[str]:
    from butterfly_common.logfiles import flush_all

    flush_all()
    path = log_dir / "acc.log"
    return path.read_text(encoding="utf-8").splitlines() if path.exists() else []


def test_http_hooks_run_before_in_order_and_after_in_reverse(recorded):
    client, seen, log_dir = recorded
    response = client.get("/jobs/add?a=1&b=2")
    assert response.status_code == 200 and response.json["sum"] == 3
    assert seen == [("a", "before_call", "/jobs/add"), ("b", "before_call", "/jobs/add"),
                    ("a", "before_handler", "/jobs/add"), ("b", "before_handler", "/jobs/add"),
                    ("b", "after_call", "OK"), ("a", "after_call", "OK"),
                    ("b", "after_answer", "/jobs/add"), ("a", "after_answer", "/jobs/add")]
    # the framework's access log is outermost: it sees what the setting's middleware added
    reqid = response.headers["x-reqid"]
    (line,) = [ln for ln in access_lines(log_dir) if reqid in ln]
    assert "stamped=1" in line and "stat:OK" in line


def test_a_refusal_in_a_hook_is_answered_and_seen_by_every_middleware(recorded):
    client, seen, _ = recorded
    response = client.get("/jobs/add?a=13&b=2")
    assert (response.status_code, response.json) == (429, {"stat": "ERR_UNLUCKY"})
    assert response.headers["x-reason"] == "13 is refused"
    # a refused before b's before_handler: the handler never ran, every after hook did
    assert [(n, h) for n, h, _ in seen] == [
        ("a", "before_call"), ("b", "before_call"), ("a", "before_handler"),
        ("a", "on_refusal"), ("b", "on_refusal"), ("b", "after_call"), ("a", "after_call"),
        ("b", "after_answer"), ("a", "after_answer")]


def test_the_role_check_runs_first_and_reads_no_body(recorded):
    client, seen, _ = recorded
    response = client.post("/jobs/admin_only", data="{not json",
                           headers={"Content-Type": "application/json"})
    # 401, not the ERR_BAD_PARAMS the body would earn: the body was never read
    assert (response.status_code, response.json["stat"]) == (401, "ERR_UNAUTHORIZED")
    assert [(n, h) for n, h, _ in seen] == [("a", "on_refusal"), ("b", "on_refusal"),
                                            ("b", "after_call"), ("a", "after_call"),
                                            ("b", "after_answer"), ("a", "after_answer")]
    seen.clear()
    ok = client.post("/jobs/admin_only", headers={"Authorization": "Bearer " + "a" * 32})
    assert ok.status_code == 200 and ("a", "before_handler", "/jobs/admin_only") in seen


def test_an_unknown_path_reaches_only_after_answer(recorded):
    client, seen, _ = recorded
    assert client.get("/no/such").status_code == 404
    assert seen == [("b", "after_answer", UNKNOWN_ROUTE), ("a", "after_answer", UNKNOWN_ROUTE)]


def test_publish_hooks_may_set_options_and_see_the_result(redis_server, tmp_path):
    configure(load_settings({"BUTTERFLY_REDIS_URL": redis_server.url,
                             "BUTTERFLY_DATA_DIR": str(tmp_path / "data")}))
    seen: list = []
    previous = active()
    install(Chain([Recorder("pub", seen)]))
    try:
        result = mq.publish("/mwpub/topic", {"n": 7}, force=True)
    finally:
        install(previous)
    assert result.msg_id == "pub-7"  # the id the middleware chose
    assert mq.get("pub-7").data == {"n": 7}
    assert seen == [("pub", "before_publish", "/mwpub/topic"), ("pub", "after_publish", "pub-7")]


def test_publish_many_runs_the_publish_hooks_per_message(redis_server, tmp_path):
    """Each message of a bulk publish is seen as a publish is: its before hook may set
    its options, its after hook gets its own result (last first: stacked states unwind)."""
    configure(load_settings({"BUTTERFLY_REDIS_URL": redis_server.url,
                             "BUTTERFLY_DATA_DIR": str(tmp_path / "data")}))
    seen: list = []
    previous = active()
    install(Chain([Recorder("bulk", seen)]))
    try:
        results = mq.publish_many([{"topic": "/mwpub/a", "data": {"n": 1}},
                                   {"topic": "/mwpub/b", "data": {"n": 2}, "msg_id": "mine"}],
                                  force=True)
        with pytest.raises(TypeError):  # refused before anything is sent
            mq.publish_many([{"topic": "/mwpub/a", "data": {"n": 3}}, {"topic": "/x"}],
                            force=True)
    finally:
        install(previous)
    assert [r.msg_id for r in results] == ["bulk-1", "mine"]  # an item's own id wins
    assert mq.get("bulk-1").data == {"n": 1} and mq.get("bulk-3") is None
    assert seen == [("bulk", "before_publish", "/mwpub/a"), ("bulk", "before_publish", "/mwpub/b"),
                    ("bulk", "after_publish", "mine"), ("bulk", "after_publish", "bulk-1"),
                    ("bulk", "before_publish", "/mwpub/a")]


def test_message_hooks_name_what_became_of_each_message(sample_consumers, redis_url):
    broker, start, _ = sample_consumers
    seen: list = []
    start(chain=Chain([*default_middleware(), Recorder("q", seen)]), threads=2)
    key = uuid.uuid4().hex
    ok = broker.publish("/jobs/add", {"a": 1, "b": 2}).msg_id
    retried = broker.publish("/jobs/flaky", {"key": key, "failures": 1}, max_retries=2).msg_id
    refused = broker.publish("/jobs/add", {"a": 1}, max_retries=3).msg_id
    timed_out = broker.publish("/jobs/slow", {"seconds": 30}, timeout=0.3,
                               max_retries=0).msg_id

    def ended(msg_id: str):
        msg = broker.get(msg_id)
        return msg if msg and msg.status in (FINISHED, FAILED) else None

    for msg_id in (ok, retried, refused, timed_out):
        wait_until(lambda m=msg_id: ended(m), 15, what=f"{msg_id} ended")
    wait_until(lambda: sum(h == "after_process" for _, h, _ in seen) == 5, 10,
               what="every attempt's after_process")

    def hooks(msg_id: str) -> list[str]:
        return [h for _, h, what in seen if what == msg_id and h != "before_call"]

    assert hooks(ok) == ["before_process", "after_process"]
    assert hooks(retried) == ["before_process", "on_retry", "after_process",
                              "before_process", "after_process"]
    assert hooks(refused) == ["before_process", "on_dead_letter", "after_process"]
    assert hooks(timed_out) == ["before_process", "on_timeout", "on_dead_letter",
                                "after_process"]


def test_the_setting_names_middleware_and_refuses_what_it_cannot_load():
    (stamp,) = load_named("sample_middleware:Stamp")
    assert type(stamp).__name__ == "Stamp"
    for spec, why in (("sample_middleware", "is not module:attr"),
                      ("no_such_module_xyz:Thing", "cannot load"),
                      ("sample_middleware:NOT_A_MIDDLEWARE", "is not a butterfly Middleware")):
        with pytest.raises(SettingsError, match=f"BUTTERFLY_MIDDLEWARE: .*{why}"):
            load_named(spec)


def test_lifecycle_hooks_run_in_a_real_server(tmp_path):
    """boot once in the master, fork in each gunicorn worker, shutdown on SIGTERM."""
    notes = tmp_path / "lifecycle"
    env = {"BUTTERFLY_WORKERS": "2", "BUTTERFLY_MIDDLEWARE": "sample_middleware:Stamp",
           "BF_TEST_LIFECYCLE": str(notes),
           "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}

    def lines() -> list[list[str]]:
        return [ln.split() for ln in notes.read_text().splitlines()] if notes.exists() else []

    with RedisServer() as server:
        service = ButterflyService("core", {**env, "BUTTERFLY_REDIS_URL": server.url})
        with service:
            wait_until(lambda: requests.get(f"{service.url}/healthz", timeout=2).ok, 30,
                       what="core up")
            wait_until(lambda: sum(w == "fork" for w, _ in lines()) == 2, 15,
                       what="both workers forked")
            answer = requests.get(f"{service.url}/demo_api/ping", timeout=5)
            assert answer.ok, answer.text
            workers = {pid for w, pid in lines() if w == "fork"}
            service.proc.send_signal(signal.SIGTERM)
            wait_until(lambda: {pid for w, pid in lines() if w == "shutdown"} == workers, 30,
                       what="every worker's shutdown hook")

            def ping_line() -> str | None:
                path = service.log_dir / "acc.log"
                found = [ln for ln in path.read_text().splitlines()
                         if "/demo_api/ping" in ln] if path.exists() else []
                return found[-1] if found else None

            line = wait_until(ping_line, 15, what="the ping's access line, flushed")
        (boot,) = [pid for w, pid in lines() if w == "boot"]
        assert boot not in workers  # the master, before it forked them
        assert "stamped=1" in line
        assert json.loads(answer.text)["stat"] == "OK"
