"""Compensation (a saga): a failed flow runs the undos of its finished steps, latest
finished first, then its on_failure tasks, each with the failed task's context; the
flow still ends failed, its detail listing the compensation."""

from __future__ import annotations

import json
import tempfile
import uuid

from test_xingqiao_api import refused
from xq_helpers import XQ


def key() -> str:
    return uuid.uuid4().hex[:10]


def calls(xq: XQ, k: str) -> list[dict]:
    return [json.loads(c) for c in xq.redis.lrange(f"xqt:calls:{k}", 0, -1)]


def saga_type(xq: XQ, name: str, k: str, last: str, undo1: dict | None = None) -> None:
    """one -> two -> plain -> three; one and two can be undone, plain cannot."""
    rec = "/xqt/record"
    xq.flow_type(name, [
        {"label": "one", "cmd": "/xqt/ok", "params": {"value": "1"},
         "undo": undo1 or {"cmd": rec, "params": {"key": k, "name": "undo-one"}}},
        {"label": "two", "cmd": "/xqt/ok", "params": {"value": "2"}, "dependencies": ["one"],
         "undo": {"cmd": rec, "params": {"key": k, "name": "undo-two"}, "retrymax": 1}},
        {"label": "plain", "cmd": "/xqt/ok", "dependencies": ["two"]},
        {"label": "three", "cmd": last, "dependencies": ["plain"]},
    ], on_failure=[{"label": "alert", "cmd": rec, "params": {"key": k, "name": "alert"}}])


def test_a_failed_flow_undoes_its_finished_steps_latest_first(xq: XQ):
    k = key()
    saga_type(xq, f"saga-{k}", k, "/xqt/fail")
    job_id = xq.create(f"saga-{k}")
    job = xq.wait(job_id)
    assert job["job_status"] == "failed" and job["ret_stat"] == "ERR_JOB_EXE_FAILED", job
    got = calls(xq, k)
    assert [c["name"] for c in got] == ["undo-two", "undo-one", "alert"]
    failed = {"label": "three", "ret_stat": "ERR_TEST_FAILED",
              "reason": "task three: handler answered ERR_TEST_FAILED"}
    assert [c["saga"]["failed"] for c in got] == [failed] * 3
    assert [c["saga"]["undoes"] for c in got] == ["two", "one", None]
    assert got[0]["saga"]["result"] == {"value": "2", "n": 0, "got": 0}  # the step's result
    assert got[2]["saga"]["result"] is None
    assert [(c["label"], c["kind"], c["undoes"], c["status"], c["ret_stat"])
            for c in job["compensation"]] == [
        ("undo:two", "undo", "two", "finished", "OK"),
        ("undo:one", "undo", "one", "finished", "OK"),
        ("alert", "on_failure", None, "finished", "OK")]
    tasks = xq.tasks(job_id)
    assert tasks["plain"]["task_status"] == "finished" and "undo:plain" not in tasks
    assert tasks["undo:one"]["task_dependencies"] == ["undo:two"]
    # a retry runs the undone steps again, and compensates its own failure once more
    retried = xq.ok(xq.post("retry_job", job_id=job_id))
    assert retried["reset"] == ["one", "plain", "three", "two"]
    job = xq.wait(job_id)
    assert job["job_status"] == "failed" and len(job["compensation"]) == 3, job
    assert [c["name"] for c in calls(xq, k)][3:] == ["undo-two", "undo-one", "alert"]
    assert all(c["status"] == "finished" for c in job["compensation"])


def test_a_flow_that_succeeds_compensates_nothing(xq: XQ):
    k = key()
    saga_type(xq, f"sagaok-{k}", k, "/xqt/ok")
    job = xq.wait(xq.create(f"sagaok-{k}"))
    assert job["job_status"] == "finished" and job["compensation"] == []
    assert calls(xq, k) == []
    assert job["job_on_failure"][0]["label"] == "alert"


def test_a_failed_undo_is_recorded_and_the_next_still_runs(xq: XQ):
    k = key()
    saga_type(xq, f"sagabad-{k}", k, "/xqt/fail", undo1={
        "cmd": "/xqt/record", "params": {"key": k, "name": "undo-one", "fail": True},
        "retrymax": 1})
    job_id = xq.create(f"sagabad-{k}")
    job = xq.wait(job_id)
    assert job["job_status"] == "failed"
    assert job["ret_stat"] == "ERR_JOB_COMPENSATION_FAILED", job
    assert [c["name"] for c in calls(xq, k)] == ["undo-two", "undo-one", "undo-one",
                                                  "alert"]  # its retry, then the next
    record = {c["label"]: c for c in job["compensation"]}
    assert record["undo:one"]["status"] == "failed"
    assert record["undo:one"]["ret_stat"] == "ERR_TEST_UNDO_FAILED"
    assert record["alert"]["status"] == "finished"
    refused(xq.post("rerun_task", task_id=record["undo:one"]["task_id"]), 409,
            "ERR_TASK_IS_COMPENSATION", "undo:one")


def test_saga_definition_refusals(xq: XQ):
    k = key()
    bad = refused(xq.post("flow_type_create", name=f"sagadef-{k}", tasks=[
        {"label": "a", "cmd": "/xqt/ok", "undo": "/xqt/record"},
        {"label": "b", "cmd": "/xqt/ok", "undo": {"params": {}}},
        {"label": "c", "cmd": "/xqt/ok", "undo": {"cmd": "nope", "params": [1]}},
        {"label": "d", "cmd": "/xqt/ok", "undo": {"cmd": "/xqt/record", "when": "x",
                                                   "retrymax": -1, "timeout": 0}},
        {"label": "undo:e", "cmd": "/xqt/ok"},
        {"label": "f", "cmd": "/xqt/ok", "dependencies": ["alert"]},
    ], on_failure=[{"label": "alert", "cmd": "/xqt/record", "dependencies": ["a"]},
                   {"label": "page", "cmd": "/xqt/record", "retry_delay": 1}]),
        400, "ERR_FLOW_TYPE_INVALID")
    errors = "\n".join(bad["errors"])
    for text in ("task a: undo must be an object", "task b: undo needs a cmd",
                 "task c: undo cmd must be a handler path", "task c: undo params must be",
                 "task d: undo has unknown keys when", "task d: undo retrymax must be",
                 "task d: undo timeout must be", "task undo:e: a label starting with undo:",
                 "task f: depends on on_failure task alert",
                 "task alert: an on_failure task runs once the flow failed: only",
                 "task page: an on_failure task runs once the flow failed: only"):
        assert text in errors, (text, errors)
    long = "x" * 60
    too_long = refused(xq.post("flow_type_create", name=f"sagadef-{k}", tasks=[
        {"label": long, "cmd": "/xqt/ok", "undo": {"cmd": "/xqt/record"}}]),
        400, "ERR_FLOW_TYPE_INVALID")
    assert too_long["errors"] == [f"task {long}: a task with undo has a label of at most "
                                  "59 chars"]
    only = refused(xq.post("flow_type_create", name=f"sagadef-{k}", tasks=[],
                           on_failure=[{"label": "alert", "cmd": "/xqt/record"}]),
                   400, "ERR_FLOW_TYPE_INVALID")
    assert only["errors"] == ["a flow needs at least one task"]
    stored = xq.flow_type(f"sagawarn-{k}", [
        {"label": "a", "cmd": "/xqt/ok", "undo": {"cmd": "/xqt/nowhere"}},
        {"label": "b", "cmd": "/xqt/ok", "undo": {"cmd": "/xqt/record"}}])
    assert stored["warnings"] == ["task a: undo topic /xqt/nowhere has never been served "
                                  "by any consumer"]


PLUGIN = '''
from butterfly_xingqiao.definitions import Workflow


class Booking(Workflow):
    def workflow(self):
        self.add_task("reserve", "/xqt/ok", {{"value": "r"}},
                      undo={{"cmd": "/xqt/record", "params": {{"key": "{k}", "name": "free"}}}})
        self.add_task("pay", "/xqt/fail", {{}}, dependencies=["reserve"])
        self.add_on_failure("tell", "/xqt/record", {{"key": "{k}", "name": "tell"}})


def setup(app):
    app.register_formatter("booking-{k}", Booking)
'''


def test_saga_in_a_plugin_flow_type(xq: XQ):
    assert xq.plugin_dir is not None
    k = key()
    (xq.plugin_dir / f"booking_{k}.py").write_text(PLUGIN.format(k=k))
    assert f"booking-{k}" in xq.ok(xq.post("reload_plugins"))["types"]
    job = xq.wait(xq.create(f"booking-{k}"))
    assert job["job_status"] == "failed"
    got = calls(xq, k)
    assert [c["name"] for c in got] == ["free", "tell"]
    assert got[0]["saga"]["failed"]["label"] == "pay"
    assert [c["label"] for c in job["compensation"]] == ["undo:reserve", "tell"]


def test_a_replica_killed_at_the_verdict_and_mid_compensation_compensates_once():
    """SIGKILL xingqiao while the failing step runs (its outcome lands while no replica
    is up), restart; SIGKILL it again while an undo runs, restart: the compensation is
    made after the first restart and finishes after the second, each call exactly once
    and in order."""
    from test_xingqiao_crash import sigkill
    from xq_helpers import core_consumer, task_consumer, xingqiao

    from butterfly_common.testing import RedisServer, wait_until

    k = key()
    rec = "/xqt/record"
    with tempfile.TemporaryDirectory(prefix="xq-plugins-") as plugins, RedisServer() as redis, \
            core_consumer(redis.url), task_consumer(redis.url), \
            xingqiao(redis.url, XINGQIAO_PLUGIN_DIR=plugins) as service:
        xq = XQ(service.url, redis.url)
        xq.flow_type(f"sagacrash-{k}", [
            {"label": "one", "cmd": "/xqt/ok",
             "undo": {"cmd": rec, "params": {"key": k, "name": "undo-one"}}},
            {"label": "two", "cmd": "/xqt/ok", "dependencies": ["one"],
             "undo": {"cmd": rec, "params": {"key": k, "name": "undo-two", "seconds": 2}}},
            {"label": "three", "cmd": rec, "dependencies": ["two"],
             "params": {"key": k, "name": "three", "fail": True, "seconds": 2}},
        ], on_failure=[{"label": "alert", "cmd": rec, "params": {"key": k, "name": "alert"}}])
        job_id = xq.create(f"sagacrash-{k}")
        names = lambda: [c["name"] for c in calls(xq, k)]  # noqa: E731
        wait_until(lambda: names() == ["three"], 20, what="the failing step running")
        sigkill(service)
        service.start()
        wait_until(lambda: names()[-1:] == ["undo-two"], 30, what="undo-two running")
        sigkill(service)
        service.start()
        job = xq.wait(job_id, 60)
        assert job["job_status"] == "failed", job
        assert names() == ["three", "undo-two", "undo-one", "alert"]
        assert [(c["label"], c["status"]) for c in job["compensation"]] == [
            ("undo:two", "finished"), ("undo:one", "finished"), ("alert", "finished")]
        xq.close()  # before the fleet stops (see XQ.close)
