"""Sub-flow tasks: a step creates a flow of another type with params from upstream data,
waits for its end (event-driven) and takes its saved result; cancel and retry propagate;
the console links parent and child both ways; each child is created exactly once."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

import pytest
from test_xingqiao_api import refused
from xq_helpers import XQ

from butterfly_common.testing import wait_until


def key() -> str:
    return uuid.uuid4().hex[:10]


def child_type(xq: XQ, name: str, second: dict) -> None:
    """A 2-task child: ``c1`` echoes its job_extra's ``value``, then ``second``; both
    saved (the later wins a name both have)."""
    xq.flow_type(name, [
        {"label": "c1", "cmd": "/xqt/ok", "requires": ["value"], "is_save": True},
        {"label": "c2", "dependencies": ["c1"], "is_save": True, **second},
    ])


def parent_type(xq: XQ, name: str, child: str) -> None:
    xq.flow_type(name, [
        {"label": "prep", "cmd": "/xqt/ok", "params": {"value": "from-prep"}},
        {"label": "sub", "subflow": {"type": child}, "requires": ["value"],
         "provides": ["value"], "dependencies": ["prep"]},
        {"label": "after", "cmd": "/xqt/ok", "requires": ["value"], "dependencies": ["sub"],
         "is_save": True},
        {"label": "cleanup", "cmd": "/xqt/ok", "dependencies": ["sub"],
         "trigger_rule": "all_done"},
    ])


def test_parent_finishes_with_the_childs_saved_result_and_links_both_ways(xq: XQ):
    k = key()
    child_type(xq, f"child-{k}", {"cmd": "/xqt/ok", "params": {"value": "from-child"}})
    parent_type(xq, f"parent-{k}", f"child-{k}")
    job_id = xq.create(f"parent-{k}")
    job = xq.wait(job_id)
    tasks = xq.tasks(job_id)
    assert job["job_status"] == "finished", {t: v["task_reason"] for t, v in tasks.items()}
    child_id = tasks["sub"]["child_job_id"]
    assert child_id and tasks["sub"]["task_child"] == child_id
    child = xq.job(child_id)
    assert child["job_status"] == "finished" and child["job_type"] == f"child-{k}"
    assert child["job_extra"] == {"value": "from-prep"}  # the task's params
    assert child["parent"] == {"job_id": job_id, "task_id": tasks["sub"]["task_id"],
                               "task_label": "sub"}
    assert (child["job_parent_id"], child["job_parent_task"]) == (job_id,
                                                               tasks["sub"]["task_id"])
    assert tasks["sub"]["ret_data"] == {**child["ret_data"], "stat": "OK"}
    assert tasks["after"]["ret_data"]["value"] == "from-child"  # passed downstream
    assert job["ret_data"]["value"] == "from-child"
    assert job["parent"] is None
    assert job["subflows"] == [{"task_id": tasks["sub"]["task_id"], "task_label": "sub",
                                "child_job_id": child_id}]
    assert xq.ok(xq.get("get_task", task_id=tasks["sub"]["task_id"]))["child_job_id"] \
        == child_id


def test_failed_child_fails_the_task_and_retry_makes_a_new_child(xq: XQ):
    k = key()
    child_type(xq, f"fchild-{k}", {"cmd": "/xqt/flaky",
                                   "params": {"key": f"f{k}", "failures": 1}})
    parent_type(xq, f"fparent-{k}", f"fchild-{k}")
    job_id = xq.create(f"fparent-{k}")
    job = xq.wait(job_id)
    tasks = xq.tasks(job_id)
    assert job["job_status"] == "failed"
    assert {t: v["task_status"] for t, v in tasks.items()} == {
        "prep": "finished", "sub": "failed", "after": "skipped", "cleanup": "finished"}
    first = tasks["sub"]["child_job_id"]
    assert xq.job(first)["job_status"] == "failed"
    assert tasks["sub"]["ret_stat"] == "ERR_SUBFLOW_FAILED"
    assert f"sub-flow {first} failed" in tasks["sub"]["task_reason"]
    assert "c2" in tasks["sub"]["task_reason"]  # the child's failed task, named
    xq.ok(xq.post("retry_job", job_id=job_id))
    job = xq.wait(job_id)
    tasks = xq.tasks(job_id)
    assert job["job_status"] == "finished", {t: v["task_reason"] for t, v in tasks.items()}
    second = tasks["sub"]["child_job_id"]
    assert second != first
    assert xq.job(first)["job_status"] == "failed"  # the old child kept as it ended
    assert xq.job(second)["job_status"] == "finished"
    children = xq.ok(xq.get("list_jobs", job_type=f"fchild-{k}", page_size=10))["list"]
    assert sorted(c["job_id"] for c in children) == sorted([first, second])
    assert xq.runs(f"f{k}") == 2


def test_cancel_parent_cancels_the_running_child(xq: XQ):
    k = key()
    child_type(xq, f"cchild-{k}", {"cmd": "/xqt/sleep", "params": {"seconds": 30}})
    parent_type(xq, f"cparent-{k}", f"cchild-{k}")
    job_id = xq.create(f"cparent-{k}")
    wait_until(lambda: xq.tasks(job_id)["sub"]["child_job_id"], 15, what="child created")
    child_id = xq.tasks(job_id)["sub"]["child_job_id"]
    wait_until(lambda: xq.tasks(child_id)["c2"]["task_status"] == "started", 15,
               what="the child's sleep running")
    done = xq.ok(xq.post("cancel_job", job_id=job_id))
    assert done["canceled_subflows"] == [child_id]
    assert xq.job(child_id)["job_status"] == "canceled"
    assert xq.tasks(child_id)["c2"]["task_status"] == "canceled"
    assert xq.tasks(job_id)["sub"]["task_status"] == "canceled"


def test_subflow_refusals_and_a_missing_type(xq: XQ):
    k = key()
    bad = refused(xq.post("flow_type_create", name=f"sbad-{k}", tasks=[
        {"label": "a", "subflow": {"type": "x"}, "cmd": "/xqt/ok"},
        {"label": "b", "subflow": {"kind": "x"}},
        {"label": "c", "subflow": {"type": "x", "version": 0}},
        {"label": "d", "subflow": {"type": "x"}, "retrymax": 2},
        {"label": "e", "subflow": {"type": "x"}, "map_over": "xs"},
    ]), 400, "ERR_FLOW_TYPE_INVALID")
    assert bad["errors"] == ["task a: a sub-flow task calls no handler: no cmd"]
    bad = refused(xq.post("flow_type_create", name=f"sbad-{k}", tasks=[
        {"label": "b", "subflow": {"kind": "x"}},
        {"label": "c", "subflow": {"type": "x", "version": 0}},
        {"label": "d", "subflow": {"type": "x"}, "retrymax": 2},
        {"label": "e", "subflow": {"type": "x"}, "map_over": "xs"},
    ]), 400, "ERR_FLOW_TYPE_INVALID")
    errors = "\n".join(bad["errors"])
    for text in ("task b: subflow must be an object", "task c: subflow version must be",
                 "task d: a sub-flow task has no retrymax",
                 "task e: a sub-flow task cannot be a signal or map_over"):
        assert text in errors, (text, errors)
    made = xq.flow_type(f"sghost-{k}", [{"label": "s", "subflow": {"type": f"ghost-{k}"}}])
    assert made["warnings"] == []  # no topic to serve
    job = xq.wait(xq.create(f"sghost-{k}"))
    assert job["job_status"] == "failed"
    task = next(iter(xq.tasks(job["job_id"]).values()))
    assert task["ret_stat"] == "ERR_JOB_TYPE_NOT_EXISTS" and f"ghost-{k}" in \
        task["task_reason"]
    # a pinned version the child type does not have: refused by create_job, the task fails
    child_type(xq, f"spin-{k}", {"cmd": "/xqt/ok"})
    xq.flow_type(f"spinned-{k}", [
        {"label": "v9", "subflow": {"type": f"spin-{k}", "version": 9}},
        {"label": "vx", "subflow": {"type": f"spin-{k}", "version": "abc"}}])
    job = xq.wait(xq.create(f"spinned-{k}"))
    tasks = xq.tasks(job["job_id"])
    assert job["job_status"] == "failed"
    assert tasks["v9"]["ret_stat"] == "ERR_JOB_VERSION_NOT_EXIST"
    assert tasks["vx"]["ret_stat"] == "ERR_SUBFLOW_CREATE_FAILED"
    assert "job_version" in tasks["vx"]["task_reason"]


def test_timeout_becomes_the_childs_and_nesting_is_bounded(xq: XQ):
    k = key()
    child_type(xq, f"tchild-{k}", {"cmd": "/xqt/sleep", "params": {"seconds": 30}})
    xq.flow_type(f"tparent-{k}", [
        {"label": "sub", "subflow": {"type": f"tchild-{k}", "version": 1}, "timeout": 1,
         "params": {"value": "x"}},
        {"label": "alert", "cmd": "/xqt/ok", "dependencies": ["sub"],
         "trigger_rule": "one_failed"}])
    job = xq.wait(xq.create(f"tparent-{k}"), 20)
    tasks = xq.tasks(job["job_id"])
    assert job["job_status"] == "failed"
    assert (tasks["sub"]["task_status"], tasks["alert"]["task_status"]) == ("timed_out",
                                                                            "finished")
    child = xq.job(tasks["sub"]["child_job_id"])
    assert (child["job_status"], child["job_timeout"]) == ("timed_out", 1)
    # a type that runs itself stops at the nesting bound: every level fails
    xq.flow_type(f"loop-{k}", [{"label": "again", "subflow": {"type": f"loop-{k}"}}])
    root = xq.wait(xq.create(f"loop-{k}"), 30)
    assert root["job_status"] == "failed"
    flows = xq.ok(xq.get("list_jobs", job_type=f"loop-{k}", page_size=100))
    assert flows["total"] == 11  # the root and 10 levels below it
    assert {f["job_status"] for f in flows["list"]} == {"failed"}
    deepest = max(f["job_id"] for f in flows["list"])
    assert xq.tasks(deepest)["again"]["ret_stat"] == "ERR_SUBFLOW_TOO_DEEP"


PLUGIN = '''
from butterfly_xingqiao.definitions import Workflow


class Outer(Workflow):
    def workflow(self):
        self.add_task("prep", "/xqt/ok", params={{"value": "plugged"}})
        self.add_subflow("inner", "pchild-{k}", requires=["value"], provides=["value"],
                         dependencies=["prep"], is_save=True)


def setup(app):
    app.register_formatter("outer-{k}", Outer)
'''


def test_subflow_in_a_plugin_flow_type(xq: XQ):
    assert xq.plugin_dir is not None
    k = key()
    child_type(xq, f"pchild-{k}", {"cmd": "/xqt/ok", "requires": ["value"]})
    (xq.plugin_dir / f"outer_{k}.py").write_text(PLUGIN.format(k=k))
    assert f"outer-{k}" in xq.ok(xq.post("reload_plugins"))["types"]
    job = xq.wait(xq.create(f"outer-{k}"))
    assert job["job_status"] == "finished" and job["ret_data"]["value"] == "plugged"


# -- exactly once and the sweep, in this process on the same stores ----------------------

@pytest.fixture(params=["sqlite", "mariadb"])
def local(request, tmp_path) -> Iterator[None]:
    """xingqiao's modules in this process on a fresh database (each kind the fleet runs
    on) and Redis."""
    from butterfly_common import db
    from butterfly_common.runtime import configure
    from butterfly_common.settings import load_settings
    from butterfly_common.testing import RedisServer, mariadb_database
    from butterfly_xingqiao.models import MODELS

    with contextlib.ExitStack() as stack:
        redis = stack.enter_context(RedisServer())
        env = {"BUTTERFLY_DATA_DIR": str(tmp_path), "BUTTERFLY_REDIS_URL": redis.url,
               "XINGQIAO_PLUGIN_DIR": str(tmp_path)}
        if request.param == "mariadb":
            env["BUTTERFLY_DB_URL"] = stack.enter_context(mariadb_database("bf_xqsub"))
        configure(load_settings(env))
        db.create_tables(MODELS)
        with db.database.connection_context():
            yield
        db.database.close()


def _types() -> None:
    from butterfly_xingqiao import flowtypes

    flowtypes.save_json_type("kid", flowtypes.json_specs([
        {"label": "c1", "cmd": "/xqt/ok", "requires": ["value"], "is_save": True}]),
        "", "-", [])
    flowtypes.save_json_type("dad", flowtypes.json_specs([
        {"label": "sub", "subflow": {"type": "kid"}, "params": {"value": "v"}},
        {"label": "after", "cmd": "/xqt/ok", "requires": ["value"],
         "dependencies": ["sub"], "is_save": True}]), "", "-", [])


def test_each_subflow_is_created_exactly_once_under_redelivery(local):
    from butterfly_common.runtime import get_config
    from butterfly_xingqiao import engine, operations, store
    from butterfly_xingqiao.config import XingqiaoConfig
    from butterfly_xingqiao.models import Job, Task
    from butterfly_xingqiao.sweep import sweep_once

    _types()
    job_id = operations.create_job(job_namespace="t", job_type="dad", job_name=None,
                                   job_extra={}, job_timeout=None, reqid="r1",
                                   operator="-", client="-")
    sub = Task.get((Task.job_id == job_id) & (Task.task_label == "sub"))
    assert sub.task_status == "started" and sub.task_run == 1
    children = list(Job.select().where(Job.job_parent_id == job_id))
    assert [c.job_id for c in children] == [sub.task_child]
    # a crash after creating the child, before the task recorded it: the task is back
    # where it was (waiting, the same run), and every later step tries again
    Task.update(task_status="waiting", task_run=0, task_child=0).where(
        Task.task_id == sub.task_id).execute()
    job = Job.get_by_id(job_id)
    stale = Task.get_by_id(sub.task_id)
    twin = Task.get_by_id(sub.task_id)
    assert engine.spawn(job, stale, {t.task_label: t for t in engine.tasks_of(job_id)})
    assert not engine.spawn(job, twin, {})  # a second replica with the same stale read
    engine.advance(job_id)  # and a sweep's advance
    again = Task.get_by_id(sub.task_id)
    assert (again.task_status, again.task_run, again.task_child) == ("started", 1,
                                                                     children[0].job_id)
    assert Job.select().where(Job.job_parent_id == job_id).count() == 1
    # the child ends; its verdict's notification to the parent is lost (a crash)
    child = Job.get_by_id(children[0].job_id)
    assert store.move_job(child, "finish", ret_data='{"value":"done","n":0}')
    assert Task.get_by_id(sub.task_id).task_status == "started"
    done = sweep_once(get_config(XingqiaoConfig))
    assert done["subflows"] == 1
    repaired = Task.get_by_id(sub.task_id)
    assert repaired.task_status == "finished"
    assert repaired.ret_data == '{"value":"done","n":0,"stat":"OK"}'
    after = Task.get((Task.job_id == job_id) & (Task.task_label == "after"))
    assert after.task_status in ("pending", "started")  # the parent moved on
    assert sweep_once(get_config(XingqiaoConfig))["subflows"] == 0
