"""Pinned versions: every flow records the definition it was built from (a JSON type's
version, a plugin's content hash), create_job may ask for one, and a flow keeps its own
tasks across a new version of its type or a plugin reload."""

from __future__ import annotations

import uuid

from test_xingqiao_api import refused
from xq_helpers import XQ

from butterfly_common.testing import wait_until


def key() -> str:
    return uuid.uuid4().hex[:10]


def test_json_flow_keeps_its_version_and_create_job_pins_one(xq: XQ):
    name = f"pin-{key()}"
    xq.flow_type(name, [
        {"label": "slow", "cmd": "/xqt/sleep", "params": {"seconds": 1.0}},
        {"label": "after", "cmd": "/xqt/ok", "params": {"value": "v1"},
         "dependencies": ["slow"], "is_save": True},
    ])
    running = xq.create(name)
    wait_until(lambda: xq.tasks(running)["slow"]["task_status"] == "started", 15,
               what="v1 flow running")
    assert xq.flow_type(name, [{"label": "only", "cmd": "/xqt/ok",
                                "params": {"value": "v2"}, "is_save": True}])["version"] == 2
    job = xq.wait(running)
    assert job["job_status"] == "finished" and job["ret_data"]["value"] == "v1"
    assert job["job_version"] == "1" and job["job_type_version"] == 1
    assert sorted(xq.tasks(running)) == ["after", "slow"]
    newest = xq.wait(xq.create(name))
    assert newest["job_version"] == "2" and newest["ret_data"]["value"] == "v2"
    pinned = xq.create(name, job_version="1")
    assert xq.wait(pinned)["job_version"] == "1"
    assert sorted(xq.tasks(pinned)) == ["after", "slow"]
    assert xq.ok(xq.post("create_job", job_namespace="t", job_type=name,
                         job_version=2))["job_id"] > 0  # a number is taken too
    refused(xq.post("create_job", job_namespace="t", job_type=name, job_version="9"), 404,
            "ERR_JOB_VERSION_NOT_EXIST", "no version 9")
    refused(xq.post("create_job", job_namespace="t", job_type=name, job_version="v1"),
            400, "ERR_BAD_PARAMS", "job_version")
    refused(xq.post("create_job", job_namespace="t", job_type=name, job_version="x" * 65),
            400, "ERR_BAD_PARAMS", "job_version")
    refused(xq.post("create_job", job_namespace="t", job_type="nope-" + name,
                    job_version="1"), 404, "ERR_JOB_TYPE_NOT_EXISTS")
    listed = xq.ok(xq.get("list_jobs", job_id=running))["list"][0]
    assert listed["job_version"] == "1"
    dot = xq.get("get_dot", job_id=running).text
    assert f"{name} v1 - finished" in dot


PLUGIN = '''
from butterfly_xingqiao.definitions import Workflow


class Pinned(Workflow):
    def workflow(self):
        self.add_task("slow", "/xqt/sleep", params={{"seconds": {seconds}}})
        self.add_task("after", "/xqt/ok", params={{"value": "{value}"}},
                      dependencies=["slow"], is_save=True)


def setup(app):
    app.register_formatter("{name}", Pinned)
'''


def test_plugin_flow_keeps_its_hash_across_a_reload(xq: XQ):
    assert xq.plugin_dir is not None
    name = f"pinned-{key()}"
    path = xq.plugin_dir / f"{name.replace('-', '_')}.py"
    path.write_text(PLUGIN.format(name=name, value="v1", seconds=1.0))
    first = xq.ok(xq.post("reload_plugins"))
    old = first["hashes"][name]
    assert len(old) == 16 and first["errors"] == {}
    listed = {t["name"]: t for t in xq.ok(xq.get("flow_type_list"))["list"]}
    assert listed[name]["hash"] == old and listed[name]["kind"] == "plugin"
    running = xq.create(name)
    wait_until(lambda: xq.tasks(running)["slow"]["task_status"] == "started", 15,
               what="the v1 flow running")
    path.write_text(PLUGIN.format(name=name, value="v2", seconds=0.01))
    new = xq.ok(xq.post("reload_plugins"))["hashes"][name]
    assert new != old
    job = xq.wait(running)
    assert job["job_status"] == "finished" and job["job_version"] == old
    assert job["ret_data"]["value"] == "v1" and job["job_type_version"] == 0
    fresh = xq.wait(xq.create(name, job_version=new))
    assert fresh["job_version"] == new and fresh["ret_data"]["value"] == "v2"
    refused(xq.post("create_job", job_namespace="t", job_type=name, job_version=old), 404,
            "ERR_JOB_VERSION_NOT_EXIST", new, "not loaded")
    # the built-in demo types carry their file's hash too
    hello = xq.wait(xq.create("hello", {"str_info": "v"}))
    assert hello["job_version"] == listed["hello"]["hash"] and len(hello["job_version"]) == 16
