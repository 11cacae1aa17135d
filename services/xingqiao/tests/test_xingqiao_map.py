"""Dynamic maps: a task with ``map_over`` runs once per item of a list it learns at run
time, at most ``max_parallel`` at once, each item with its own retries; its dependents get
``results`` in item order; a failed item follows the trigger rules."""

from __future__ import annotations

import uuid

from test_xingqiao_api import refused
from xq_helpers import XQ


def key() -> str:
    return uuid.uuid4().hex[:10]


def runs(xq: XQ, k: str, item: object) -> int:
    return xq.runs(f"{k}:{item}")


def test_map_over_an_upstream_list_bounded_retried_and_collected_in_order(xq: XQ):
    k = key()
    xq.flow_type(f"map-{k}", [
        {"label": "gen", "cmd": "/xqt/numbers", "params": {"n": 12}},
        {"label": "sq", "cmd": "/xqt/item", "dependencies": ["gen"], "map_over": "numbers",
         "max_parallel": 3, "requires": ["key", "seconds", "flaky_items"],
         "extra": {"key": k, "seconds": 0.1, "flaky_items": [5]},
         "retrymax": 1, "retry_delay": 0.1, "provides": ["double"]},
        {"label": "collect", "cmd": "/xqt/gather", "dependencies": ["sq"],
         "requires": ["results", "failed"], "is_save": True},
    ])
    job_id = xq.create(f"map-{k}")
    job = xq.wait(job_id, 60)
    tasks = xq.tasks(job_id)
    assert job["job_status"] == "finished", {t: v["task_reason"] for t, v in tasks.items()}
    assert job["ret_data"] == {"order": list(range(12)), "failed": []}
    assert 1 <= int(xq.redis.get(f"xqt:maxconc:{k}")) <= 3  # bounded by max_parallel
    assert [runs(xq, k, i) for i in range(12)] == [1] * 5 + [2] + [1] * 6
    assert tasks["sq[5]"]["task_retrycount"] == 1 and tasks["sq[5]"]["task_parent"] == \
        tasks["sq"]["task_id"]
    assert tasks["sq[7]"]["task_params"] == {"key": k, "seconds": 0.1, "flaky_items": [5],
                                             "item": 7}
    sq = tasks["sq"]
    assert sq["task_status"] == "finished" and sq["ret_data"]["count"] == 12
    assert [r["double"] for r in sq["ret_data"]["results"]] == [2 * i for i in range(12)]
    assert job["maps"] == {"sq": {"total": 12, "finished": 12}}
    dot = xq.get("get_dot", job_id=job_id).text
    assert "map numbers: 12/12 finished" in dot and "sq[" not in dot
    assert dot.count("shape=box3d") == 1


def test_failed_item_follows_trigger_rules_and_retry_reruns_only_it(xq: XQ):
    k = key()
    xq.flow_type(f"mapfail-{k}", [
        {"label": "each", "cmd": "/xqt/item", "map_over": "names", "map_as": "item",
         "params": {"key": k}, "max_parallel": 2},
        {"label": "strict", "cmd": "/xqt/ok", "dependencies": ["each"]},
        {"label": "collect", "cmd": "/xqt/gather", "dependencies": ["each"],
         "requires": ["results", "failed"], "trigger_rule": "all_done", "is_save": True},
        {"label": "alert", "cmd": "/xqt/ok", "dependencies": ["each"],
         "trigger_rule": "one_failed"},
    ])
    xq.redis.set(f"xqt:block:{k}:b", 1)
    job_id = xq.create(f"mapfail-{k}", {"names": ["a", "b", "c"]})
    job = xq.wait(job_id, 30)
    tasks = xq.tasks(job_id)
    states = {label: t["task_status"] for label, t in tasks.items()}
    assert states == {"each": "failed", "each[0]": "finished", "each[1]": "failed",
                      "each[2]": "finished", "strict": "skipped", "collect": "finished",
                      "alert": "finished"}
    assert job["job_status"] == "failed"
    assert job["ret_data"] == {"order": ["a", None, "c"], "failed": [1]}
    assert tasks["each"]["ret_stat"] == "ERR_MAP_ITEM_FAILED"
    assert "1 of 3 items did not finish: 1" in tasks["each"]["task_reason"]
    assert job["maps"]["each"] == {"total": 3, "finished": 2, "failed": 1}
    refused(xq.post("rerun_task", task_id=tasks["each[1]"]["task_id"]), 409,
            "ERR_TASK_IS_MAP_ITEM", "rerun the map task")
    # retry_job: only the failed item runs again; the finished ones keep their results
    xq.redis.delete(f"xqt:block:{k}:b")
    reset = xq.ok(xq.post("retry_job", job_id=job_id))["reset"]
    assert reset == ["alert", "collect", "each", "each[1]", "strict"]
    job = xq.wait(job_id, 30)
    assert job["job_status"] == "finished"
    assert job["ret_data"] == {"order": ["a", "b", "c"], "failed": []}
    assert (runs(xq, k, "a"), runs(xq, k, "b"), runs(xq, k, "c")) == (1, 2, 1)
    assert xq.tasks(job_id)["alert"]["task_status"] == "skipped"
    # rerun_task of the map task makes its items again, from the list as it is now
    xq.ok(xq.post("rerun_task", task_id=tasks["each"]["task_id"]))
    job = xq.wait(job_id, 30)
    assert job["job_status"] == "finished", [(t, v["task_id"], v["task_status"],
                                              v["task_reason"], v["ret_data"])
                                             for t, v in xq.tasks(job_id).items()]
    assert (runs(xq, k, "a"), runs(xq, k, "b"), runs(xq, k, "c")) == (2, 3, 2)
    assert len([t for t in xq.tasks(job_id) if t.startswith("each[")]) == 3


def test_map_over_refusals_and_empty_lists(xq: XQ):
    k = key()
    bad = refused(xq.post("flow_type_create", name=f"mapbad-{k}", tasks=[
        {"label": "a", "cmd": "/xqt/item", "map_over": "xs", "max_parallel": 0},
        {"label": "b[3]", "cmd": "/xqt/item"},
        {"label": "c", "cmd": "/xqt/item", "map_over": ["xs"]},
        {"label": "d" * 60, "cmd": "/xqt/item", "map_over": "xs"},
        {"label": "e", "cmd": "/xqt/item", "map_over": "xs", "map_as": ""},
    ]), 400, "ERR_FLOW_TYPE_INVALID")
    errors = "\n".join(bad["errors"])
    for text in ("task a: max_parallel must be a whole number 1..10000",
                 "task b[3]: a label ending in [<number>] is reserved for map items",
                 "task c: map_over must be a name", "task e: map_as must be a name",
                 f"task {'d' * 60}: a map task's label has at most 58 chars"):
        assert text in errors, (text, errors)
    xq.flow_type(f"mapx-{k}", [
        {"label": "each", "cmd": "/xqt/item", "map_over": "xs", "params": {"key": k}},
        {"label": "collect", "cmd": "/xqt/gather", "dependencies": ["each"],
         "requires": ["results"], "is_save": True},
    ])
    empty = xq.wait(xq.create(f"mapx-{k}", {"xs": []}))
    assert empty["job_status"] == "finished" and empty["ret_data"] == {"order": [],
                                                                       "failed": []}
    for extra, words in (({}, "map_over name xs not found"),
                         ({"xs": {"a": 1}}, "map_over xs is a dict, not a list")):
        job_id = xq.create(f"mapx-{k}", extra)
        job = xq.wait(job_id)
        each = xq.tasks(job_id)["each"]
        assert job["job_status"] == "failed" and each["task_status"] == "failed"
        assert each["ret_stat"] == "ERR_TASK_MAP_OVER_INVALID" and words in each["task_reason"]


PLUGIN = '''
from butterfly_xingqiao.definitions import Workflow


class Fan(Workflow):
    def workflow(self):
        self.add_task("fan", "/xqt/item", params={{"key": "{k}"}}, map_over="cities",
                      max_parallel=2, retrymax=1)
        self.add_task("collect", "/xqt/gather", requires=["results"],
                      dependencies=["fan"], is_save=True)


def setup(app):
    app.register_formatter("fan-{k}", Fan)
'''


def test_map_in_a_plugin_flow_type(xq: XQ):
    assert xq.plugin_dir is not None
    k = key()
    (xq.plugin_dir / f"fan_{k}.py").write_text(PLUGIN.format(k=k))
    assert f"fan-{k}" in xq.ok(xq.post("reload_plugins"))["types"]
    job = xq.wait(xq.create(f"fan-{k}", {"cities": ["Lyon", "Oslo", "Quito"]}))
    assert job["job_status"] == "finished"
    assert job["ret_data"]["order"] == ["Lyon", "Oslo", "Quito"]
