"""Signal tasks: a step waits for send_signal(job_id, name, payload), kept when sent
before the step is reached; the payload is its result; a timeout applies its policy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor

from test_xingqiao_api import refused
from xq_helpers import TOKEN, XQ

from butterfly_common.testing import wait_until


def key() -> str:
    return uuid.uuid4().hex[:10]


def signal(xq: XQ, job_id: int, name: str, **payload: object) -> dict:
    return xq.ok(xq.post("send_signal", job_id=job_id, name=name, payload=payload))


def test_signals_sent_early_are_kept_and_taken_in_order(xq: XQ):
    k = key()
    xq.flow_type(f"sig-{k}", [
        {"label": "slow", "cmd": "/xqt/sleep", "params": {"seconds": 0.5}},
        {"label": "first", "signal": "step", "dependencies": ["slow"], "provides": ["value"]},
        {"label": "second", "signal": "step", "dependencies": ["first"]},
        {"label": "after", "cmd": "/xqt/ok", "requires": ["value"],
         "dependencies": ["second"], "is_save": True},
    ])
    job_id = xq.create(f"sig-{k}")
    one = signal(xq, job_id, "step", value="early", by="ann")
    two = signal(xq, job_id, "step", value="later")
    assert one["kept"] is True and one["delivered_to"] is None
    assert two["signal_id"] > one["signal_id"]
    job = xq.wait(job_id)
    tasks = xq.tasks(job_id)
    assert job["job_status"] == "finished", {t: v["task_reason"] for t, v in tasks.items()}
    assert tasks["first"]["ret_data"] == {"value": "early", "by": "ann", "stat": "OK"}
    assert tasks["second"]["ret_data"] == {"value": "later", "stat": "OK"}
    assert tasks["first"]["task_reason"] == (f"signal step #{one['signal_id']} from "
                                             f"{job['operator']}")  # the caller, as audited
    assert job["ret_data"]["value"] == "later"  # the nearest dependency's payload wins
    listed = xq.ok(xq.get("list_signals", job_id=job_id))
    assert [(s["name"], s["task_label"], s["payload"]) for s in listed["list"]] == [
        ("step", "first", {"value": "early", "by": "ann"}),
        ("step", "second", {"value": "later"})]
    refused(xq.post("send_signal", job_id=job_id, name="step"), 409, "ERR_JOB_NOT_RUNNING",
            "finished")


def test_signal_to_a_waiting_task_moves_the_flow_through_the_client(xq: XQ):
    from butterfly_xingqiao.client import FlowClient

    k = key()
    xq.flow_type(f"sigwait-{k}", [
        {"label": "approve", "signal": "approved", "timeout": 60},
        {"label": "after", "cmd": "/xqt/ok", "requires": ["value"],
         "dependencies": ["approve"], "is_save": True},
    ])
    job_id = xq.create(f"sigwait-{k}")
    wait_until(lambda: xq.tasks(job_id)["approve"]["task_status"] == "started", 10,
               what="the signal task waiting")
    waiting = xq.job(job_id)
    assert waiting["job_status"] == "started"
    assert waiting["job_lock"] is False  # nothing of it is out on the queue
    flows = FlowClient(xq.url, token=TOKEN)
    sent = flows.send_signal(job_id, "approved", {"value": "yes"})
    assert sent["delivered_to"] == "approve" and sent["kept"] is False
    job = flows.wait(job_id, 20)
    assert job["job_status"] == "finished" and job["ret_data"]["value"] == "yes"


def test_timeout_policies_fail_skip_default(xq: XQ):
    k = key()
    for policy, extra in (("fail", {}), ("skip", {}),
                          ("default", {"default": {"value": "dflt"}})):
        xq.flow_type(f"sigto-{policy}-{k}", [
            {"label": "wait", "signal": "never", "timeout": 0.5, "on_timeout": policy,
             **extra},
            {"label": "strict", "cmd": "/xqt/ok", "dependencies": ["wait"]},
            {"label": "cleanup", "cmd": "/xqt/ok", "dependencies": ["wait"],
             "trigger_rule": "all_done", "requires": ["value"], "extra": {"value": "-"}},
        ])
    jobs = {p: xq.create(f"sigto-{p}-{k}") for p in ("fail", "skip", "default")}
    ended = {p: xq.wait(j, 20) for p, j in jobs.items()}
    states = {p: {label: t["task_status"] for label, t in xq.tasks(j).items()}
              for p, j in jobs.items()}
    assert states["fail"] == {"wait": "timed_out", "strict": "skipped", "cleanup": "finished"}
    assert ended["fail"]["job_status"] == "failed"
    wait = xq.tasks(jobs["fail"])["wait"]
    assert wait["ret_stat"] == "ERR_SIGNAL_TIMEOUT" and "no signal never within 0.5s" in \
        wait["task_reason"]
    assert states["skip"] == {"wait": "skipped", "strict": "skipped", "cleanup": "finished"}
    assert ended["skip"]["job_status"] == "finished"
    assert states["default"] == {"wait": "finished", "strict": "finished",
                                 "cleanup": "finished"}
    default = xq.tasks(jobs["default"])
    assert default["wait"]["ret_data"] == {"value": "dflt", "stat": "OK"}
    assert default["cleanup"]["ret_data"]["value"] == "-"  # task extra beats upstream
    assert "default result" in default["wait"]["task_reason"]


def test_signal_refusals(xq: XQ):
    k = key()
    cmd = refused(xq.post("flow_type_create", name=f"sigbad-{k}", tasks=[
        {"label": "a", "signal": "s", "cmd": "/xqt/ok"}]), 400, "ERR_FLOW_TYPE_INVALID")
    assert cmd["errors"] == ["task a: a signal task calls no handler: no cmd"]
    bad = refused(xq.post("flow_type_create", name=f"sigbad-{k}", tasks=[
        {"label": "b", "signal": "s", "on_timeout": "retry"},
        {"label": "c", "signal": "s", "default": [1]},
        {"label": "d", "cmd": "/xqt/ok", "on_timeout": "skip"},
        {"label": "e", "signal": "s", "map_over": "xs"},
        {"label": "f", "signal": ""},
    ]), 400, "ERR_FLOW_TYPE_INVALID")
    errors = "\n".join(bad["errors"])
    for text in ("task b: on_timeout must be one of fail, skip, default",
                 "task c: default must be an object",
                 "task d: on_timeout, default and approval are for signal tasks",
                 "task e: a signal task cannot map_over", "task f: signal must be a name"):
        assert text in errors, (text, errors)
    made = xq.flow_type(f"sigok-{k}", [{"label": "w", "signal": "go", "provides": ["who"]}])
    assert made["warnings"] == []  # a signal task has no topic to serve
    job_id = xq.create(f"sigok-{k}")
    refused(xq.post("send_signal", job_id=job_id, name="stop"), 404, "ERR_SIGNAL_UNKNOWN",
            "'stop'", "its signals: go")
    refused(xq.post("send_signal", job_id=job_id, name="go", payload={"x": 1}), 400,
            "ERR_SIGNAL_PAYLOAD_INVALID", "task w", "who")
    refused(xq.post("send_signal", job_id=job_id, name="go", payload=[1]), 400,
            "ERR_BAD_PARAMS", "payload")
    refused(xq.post("send_signal", job_id=job_id, name="g" * 65), 400, "ERR_BAD_PARAMS")
    refused(xq.post("send_signal", job_id=10**9, name="go"), 404, "ERR_JOB_NOT_EXIST")
    refused(xq.get("list_signals", job_id=10**9), 404, "ERR_JOB_NOT_EXIST")
    assert xq.post("send_signal", auth=False, job_id=job_id, name="go").status_code == 401
    assert xq.ok(xq.get("list_signals", job_id=job_id))["total"] == 0  # refusals kept none
    # a waiting signal task is canceled with its flow
    wait_until(lambda: xq.tasks(job_id)["w"]["task_status"] == "started", 10,
               what="w waiting")
    xq.ok(xq.post("cancel_job", job_id=job_id))
    assert xq.tasks(job_id)["w"]["task_status"] == "canceled"
    refused(xq.post("send_signal", job_id=job_id, name="go", payload={"who": "x"}), 409,
            "ERR_JOB_NOT_RUNNING")


def test_approval_task_is_listed_until_a_person_decides(xq: XQ):
    k = key()
    refused(xq.post("flow_type_create", name=f"apbad-{k}", tasks=[
        {"label": "ask", "approval": "x" * 256}]), 400, "ERR_FLOW_TYPE_INVALID",
        "approval must be a question of 1..255 chars")
    xq.flow_type(f"ap-{k}", [
        {"label": "ship", "approval": f"Ship {k}?", "timeout": 60},
        {"label": "after", "cmd": "/xqt/ok", "dependencies": ["ship"]},
    ])
    job_id = xq.create(f"ap-{k}")

    def listed() -> list[dict]:
        rows = xq.ok(xq.get("list_approvals", page_size=1000))["list"]
        return [r for r in rows if r["job_id"] == job_id]

    wait_until(lambda: listed(), 10, what="the approval listed")
    row = listed()[0]
    assert (row["task_label"], row["signal"], row["approval"]) == ("ship", "ship",
                                                                   f"Ship {k}?")
    assert row["deadline"] > 0 and row["job_type"] == f"ap-{k}"
    sent = signal(xq, job_id, "ship", approved=True, comment="go ahead")
    assert sent["delivered_to"] == "ship"
    job = xq.wait(job_id)
    assert job["job_status"] == "finished" and listed() == []
    assert xq.tasks(job_id)["ship"]["ret_data"] == {"approved": True, "comment": "go ahead",
                                                    "stat": "OK"}
    refused(xq.get("list_approvals", page_size=0), 400, "ERR_BAD_PARAMS")


PLUGIN = '''
from butterfly_xingqiao.definitions import Workflow


class Gate(Workflow):
    def workflow(self):
        self.add_signal("gate", "open", timeout=30, on_timeout="default",
                        default={{"value": "closed"}})
        self.add_task("after", "/xqt/ok", requires=["value"], dependencies=["gate"],
                      is_save=True)
        self.add_approval("check", "Looks right?", dependencies=["after"], timeout=30,
                          on_timeout="default", default={{"approved": False}})


def setup(app):
    app.register_formatter("gate-{k}", Gate)
'''


def test_signal_in_a_plugin_flow_type(xq: XQ):
    assert xq.plugin_dir is not None
    k = key()
    (xq.plugin_dir / f"gate_{k}.py").write_text(PLUGIN.format(k=k))
    assert f"gate-{k}" in xq.ok(xq.post("reload_plugins"))["types"]
    job_id = xq.create(f"gate-{k}")
    signal(xq, job_id, "open", value="opened")
    signal(xq, job_id, "check", approved=True)  # kept until the approval is reached
    job = xq.wait(job_id)
    assert job["job_status"] == "finished" and job["ret_data"]["value"] == "opened"
    assert xq.tasks(job_id)["check"]["task_approval"] == "Looks right?"


def _cli(xq: XQ, *args: str, token: str = TOKEN) -> subprocess.CompletedProcess:
    env = {**os.environ, "BUTTERFLY_XINGQIAO_URL": xq.url, "BUTTERFLY_OPERATOR_TOKEN": token}
    env.pop("BUTTERFLY_ADMIN_TOKEN", None)
    return subprocess.run([sys.executable, "-m", "butterfly_common.cli", "xingqiao",
                           "signal", *args], env=env, capture_output=True, text=True,
                          timeout=60, check=False)


def test_cli_signal_moves_a_waiting_flow_and_says_why_it_cannot(xq: XQ):
    k = key()
    xq.flow_type(f"sigcli-{k}", [
        {"label": "approve", "signal": "approved", "timeout": 60, "provides": ["value"]},
        {"label": "after", "cmd": "/xqt/ok", "requires": ["value"],
         "dependencies": ["approve"], "is_save": True},
    ])
    job_id = xq.create(f"sigcli-{k}")
    wait_until(lambda: xq.tasks(job_id)["approve"]["task_status"] == "started", 10,
               what="the signal task waiting")
    # the refusals change nothing, so the five CLI runs (a process each) go side by side
    with ThreadPoolExecutor(5) as pool:
        bad_json, bad_list, lacking, unknown, denied = pool.map(lambda a: _cli(xq, *a[0], **a[1]), [
            ((str(job_id), "approved", "--payload", "{not json"), {}),
            ((str(job_id), "approved", "--payload", "[1]"), {}),
            ((str(job_id), "approved"), {}),  # the task provides value: refused
            (("999999999", "approved"), {}),
            ((str(job_id), "approved", "--payload", "{}"),
             {"token": "not-the-token-0123456789"})])
    assert bad_json.returncode == 2 and "--payload is not JSON" in bad_json.stderr, bad_json
    assert bad_list.returncode == 2 and "must be a JSON object" in bad_list.stderr, bad_list
    assert lacking.returncode == 1, lacking
    assert "ERR_SIGNAL_PAYLOAD_INVALID" in lacking.stderr and "value" in lacking.stderr
    assert unknown.returncode == 1 and "ERR_JOB_NOT_EXIST" in unknown.stderr, unknown
    assert denied.returncode == 1 and denied.stderr.strip(), denied
    sent = _cli(xq, str(job_id), "approved", "--payload", '{"value": "from-cli"}')
    assert sent.returncode == 0, sent
    assert json.loads(sent.stdout)["delivered_to"] == "approve"
    job = xq.wait(job_id, 20)
    assert job["job_status"] == "finished" and job["ret_data"]["value"] == "from-cli"
