"""Every /xingqiao handler and error code, over a real server."""

from __future__ import annotations

import uuid

import pytest
from xq_helpers import XQ

from butterfly_common.testing import wait_until


def refused(response, code: int, stat: str, *words: str) -> dict:
    body = response.json()
    assert response.status_code == code, (response.status_code, body)
    assert body["stat"] == stat, body
    reason = response.headers.get("x-reason", "")
    for word in words:
        assert word in reason, (word, reason)
    return body


@pytest.fixture(scope="module")
def finished_job(xq: XQ) -> int:
    job_id = xq.create("hello", {"str_info": "api"}, job_name=f"api-{uuid.uuid4().hex[:8]}")
    assert xq.wait(job_id)["job_status"] == "finished"
    return job_id


def test_writes_need_authorization(xq: XQ):
    body = {"job_namespace": "t", "job_type": "ping"}
    refused(xq.post("create_job", auth=False, **body), 401, "ERR_UNAUTHORIZED")
    wrong = xq.http.post(f"{xq.url}/xingqiao/create_job", json=body,
                         headers={"Authorization": "Bearer wrong-token-wrong-token"})
    refused(wrong, 401, "ERR_UNAUTHORIZED", "invalid token")
    for route in ("retry_job", "cancel_job", "delete_job", "rerun_task", "flow_type_create",
                  "reload_plugins"):
        assert xq.post(route, auth=False).status_code == 401, route


def test_create_job_errors(xq: XQ, finished_job: int):
    name = xq.job(finished_job)["job_name"]
    refused(xq.post("create_job", job_namespace="t", job_type="ping", job_name=name), 409,
            "ERR_JOB_EXIST", name)
    refused(xq.post("create_job", job_namespace="t", job_type="nope"), 404,
            "ERR_JOB_TYPE_NOT_EXISTS", "nope")
    refused(xq.post("create_job", job_namespace="t", job_type="ping", job_extra="{bad"), 400,
            "ERR_JOB_EXTRA_INVALID")
    refused(xq.post("create_job", job_namespace="t", job_type="ping", job_extra="[1]"), 400,
            "ERR_JOB_EXTRA_INVALID")
    refused(xq.post("create_job", job_namespace="t", job_type="hello", job_extra={}), 400,
            "ERR_JOB_CREATE_FAILED", "str_info")
    refused(xq.post("create_job", job_namespace="t"), 400, "ERR_BAD_PARAMS", "job_type")
    refused(xq.post("create_job", job_namespace="t", job_type="ping", job_timeout=0), 400,
            "ERR_BAD_PARAMS")
    # job_extra as a JSON string, as the original took it
    job_id = xq.ok(xq.post("create_job", job_namespace="t", job_type="hello",
                           job_extra='{"str_info": "s"}'))["job_id"]
    assert xq.wait(job_id)["job_status"] == "finished"


def test_list_jobs_filters_paging_and_order(xq: XQ, finished_job: int):
    job = xq.job(finished_job)
    page = xq.ok(xq.get("list_jobs", job_id=finished_job))
    assert page["total"] == 1
    row = page["list"][0]
    assert set(row) >= {"job_id", "job_namespace", "job_reqid", "job_name", "job_status",
                        "job_type", "ret_stat", "operator", "job_client", "c_time",
                        "s_time", "e_time"}
    assert row["job_client"] == "127.0.0.1"
    for name in ("job_namespace", "job_reqid", "job_status", "job_type", "ret_stat",
                 "operator"):
        hits = xq.ok(xq.get("list_jobs", **{name: job[name]}, page_size=1000))["list"]
        assert finished_job in [j["job_id"] for j in hits], name
    like = xq.ok(xq.get("list_jobs", job_name=job["job_name"][:6] + "%"))["list"]
    assert finished_job in [j["job_id"] for j in like]
    assert xq.ok(xq.get("list_jobs", job_status="no-such"))["total"] == 0
    all_jobs = xq.ok(xq.get("list_jobs", page_size=1000))
    ids = [j["job_id"] for j in all_jobs["list"]]
    assert ids == sorted(ids, reverse=True) and all_jobs["total"] == len(ids) >= 2
    asc = xq.ok(xq.get("list_jobs", orderBy="job_id", orderDir="asc", page_size=1000))
    assert [j["job_id"] for j in asc["list"]] == sorted(ids)
    second = xq.ok(xq.get("list_jobs", page_index=2, page_size=1))["list"]
    assert [j["job_id"] for j in second] == ids[1:2]
    refused(xq.get("list_jobs", orderBy="job_extra"), 400, "ERR_BAD_PARAMS", "orderBy")
    refused(xq.get("list_jobs", orderBy="job_id", orderDir="up"), 400, "ERR_BAD_PARAMS")
    refused(xq.get("list_jobs", page_size=0), 400, "ERR_BAD_PARAMS")


def test_detail_tasks_and_task(xq: XQ, finished_job: int):
    detail = xq.job(finished_job)
    assert detail["ret_data"]["merged"]["str_info"] == "api"
    assert detail["task_status"] == {"finished": 3} and detail["job_extra"] == {"str_info": "api"}
    assert detail["job_lock"] is False  # ended: nothing of it is out on the queue
    refused(xq.get("get_job_detail", job_id=10**9), 404, "ERR_JOB_NOT_EXIST")
    listed = xq.ok(xq.get("get_tasklist_by_jobid", job_id=finished_job))
    assert listed["total"] == 3 and [t["task_label"] for t in listed["list"]] == [
        "task1", "task2", "task3"]
    refused(xq.get("get_tasklist_by_jobid", job_id=10**9), 404, "ERR_JOB_NOT_EXIST")
    paged = xq.ok(xq.get("list_tasks", job_id=finished_job, page_size=2,
                         orderBy="task_label", orderDir="desc"))
    assert paged["total"] == 3 and [t["task_label"] for t in paged["list"]] == ["task3",
                                                                               "task2"]
    refused(xq.get("list_tasks", job_id=finished_job, orderBy="ret_data"), 400,
            "ERR_BAD_PARAMS")
    one = xq.ok(xq.get("get_task", task_id=listed["list"][0]["task_id"]))
    assert one["task_label"] == "task1" and one["task_requires"] == ["str_info"]
    refused(xq.get("get_task", task_id=10**9), 404, "ERR_TASK_NOT_EXIST")


def test_state_refusals(xq: XQ, finished_job: int):
    refused(xq.post("retry_job", job_id=finished_job), 409, "ERR_JOB_STATUS_NOT_FAILED",
            "finished")
    refused(xq.post("retry_job", job_id=10**9), 404, "ERR_JOB_NOT_EXIST")
    refused(xq.post("cancel_job", job_id=finished_job), 409, "ERR_JOB_NOT_RUNNING")
    k = uuid.uuid4().hex[:8]
    xq.flow_type(f"slow-{k}", [{"label": "s", "cmd": "/xqt/sleep",
                                "params": {"seconds": 20}}])
    running = xq.create(f"slow-{k}")
    # its one task's message is out (the original admin page's job_lock)
    wait_until(lambda: xq.job(running)["job_lock"] is True, 10, what="job_lock set")
    refused(xq.post("delete_job", job_id=running), 409, "ERR_JOB_RUNNING", "cancel_job")
    task_id = xq.tasks(running)["s"]["task_id"]
    refused(xq.post("rerun_task", task_id=task_id), 409, "ERR_TASK_RUNNING", "s")
    refused(xq.post("rerun_task", task_id=10**9), 404, "ERR_TASK_NOT_EXIST")
    xq.ok(xq.post("cancel_job", job_id=running))
    assert xq.job(running)["job_lock"] is False  # canceled: its message deleted / fenced
    deleted = xq.ok(xq.post("delete_job", job_id=running))
    assert deleted["deleted_tasks"] == 1
    refused(xq.get("get_job_detail", job_id=running), 404, "ERR_JOB_NOT_EXIST")
    refused(xq.post("delete_job", job_id=running), 404, "ERR_JOB_NOT_EXIST")


def test_graph_svg_png_and_dot(xq: XQ, finished_job: int):
    svg = xq.get("get_graph", job_id=finished_job)
    assert svg.status_code == 200 and svg.headers["content-type"] == "image/svg+xml"
    text = svg.text
    assert text.count('fill="lightblue"') == 3  # every task node coloured finished
    assert "taskid=" not in text or "task1" in text
    assert "stat=OK" in text and "cost=" in text
    png = xq.get("get_graph", job_id=finished_job, format="png")
    assert png.status_code == 200 and png.content[:8] == b"\x89PNG\r\n\x1a\n"
    refused(xq.get("get_graph", job_id=finished_job, format="gif"), 400, "ERR_BAD_PARAMS")
    refused(xq.get("get_graph", job_id=10**9), 404, "ERR_JOB_NOT_EXIST")
    dot = xq.get("get_dot", job_id=finished_job)
    assert dot.headers["content-type"].startswith("text/vnd.graphviz")
    assert "begin0 ->" in dot.text and "-> end0" in dot.text
    assert dot.text.count('class="finished"') == 3


def test_flow_type_create_validates_and_versions(xq: XQ):
    name = f"ft-{uuid.uuid4().hex[:8]}"
    bad = refused(xq.post("flow_type_create", name=name, tasks=[
        {"label": "a", "cmd": "/xqt/ok", "dependencies": ["c"]},
        {"label": "b", "cmd": "xqt/ok"},
        {"label": "c", "cmd": "/xqt/ok", "dependencies": ["a"]},
        {"label": "d", "cmd": "/xqt/ok", "dependencies": ["zz"], "trigger_rule": "sometimes"},
        {"label": "d", "cmd": "/xqt/ok", "retrymax": -1},
    ]), 400, "ERR_FLOW_TYPE_INVALID", "task b", "task d")
    errors = "\n".join(bad["errors"])
    assert "task b: cmd must be a handler path" in errors
    assert "task d: unknown dependency zz" in errors
    assert "task d: trigger_rule must be one of" in errors
    assert "task d: label used twice" in errors and "task d: retrymax" in errors
    cyc = refused(xq.post("flow_type_create", name=name, tasks=[
        {"label": "a", "cmd": "/xqt/ok", "dependencies": ["c"]},
        {"label": "b", "cmd": "/xqt/ok", "dependencies": ["a"]},
        {"label": "c", "cmd": "/xqt/ok", "dependencies": ["b"]},
    ]), 400, "ERR_FLOW_TYPE_INVALID", "cycle")
    assert "a -> c -> b -> a" in cyc["errors"][0] or "cycle" in cyc["errors"][0]
    unknown = refused(xq.post("flow_type_create", name=name, tasks=[
        {"label": "a", "cmd": "/xqt/ok", "colour": "red"}]), 400, "ERR_FLOW_TYPE_INVALID")
    assert unknown["errors"] == ["task a: unknown keys colour"]
    refused(xq.post("flow_type_create", name=name, tasks=[]), 400, "ERR_FLOW_TYPE_INVALID")
    refused(xq.post("flow_type_create", name="hello", tasks=[{"label": "a",
                                                               "cmd": "/xqt/ok"}]),
            409, "ERR_FLOW_TYPE_IS_PLUGIN")
    first = xq.flow_type(name, [{"label": "a", "cmd": "/xqt/ok"},
                                {"label": "b", "cmd": "/typo/never_served"}])
    assert first["version"] == 1
    assert first["warnings"] == ["task b: topic /typo/never_served has never been served "
                                 "by any consumer"]
    second = xq.flow_type(name, [{"label": "a", "cmd": "/xqt/ok"}],
                          extra_required=["who"])
    assert second == {"name": name, "version": 2, "warnings": []}
    got = xq.ok(xq.get("flow_type_get", name=name))
    assert got["version"] == 2 and got["extra_required"] == ["who"]
    assert len(xq.ok(xq.get("flow_type_get", name=name, version=1))["tasks"]) == 2
    refused(xq.get("flow_type_get", name="nope-" + name), 404, "ERR_FLOW_TYPE_NOT_EXIST")
    listed = xq.ok(xq.get("flow_type_list"))
    kinds = {t["name"]: (t["kind"], t["version"]) for t in listed["list"]}
    assert kinds["hello"] == ("plugin", 0) and kinds[name] == ("json", 2)
    refused(xq.post("create_job", job_namespace="t", job_type=name), 400,
            "ERR_JOB_EXTRA_INVALID", "who")
    job_id = xq.create(name, {"who": "me"})
    assert xq.wait(job_id)["job_type_version"] == 2


def test_reload_plugins_and_task_notice_is_queue_only(xq: XQ):
    loaded = xq.ok(xq.post("reload_plugins"))
    assert {"ping", "hello", "hello_params"} <= set(loaded["types"])
    assert loaded["errors"] == {} and loaded["version"] >= 1
    refused(xq.post("task_notice", msg_id="x", topic="/a/b"), 403, "ERR_NOT_FROM_QUEUE")


def test_legacy_names_gone(xq: XQ):
    assert xq.get("job_action").status_code == 404
