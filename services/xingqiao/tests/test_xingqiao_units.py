"""Pure pieces: definition validation, trigger rules, data passing, lifecycles, CAS moves,
plugin loading."""

from __future__ import annotations

import pytest

from butterfly_common import db
from butterfly_common.runtime import configure
from butterfly_common.settings import load_settings
from butterfly_xingqiao import dataflow, engine, store
from butterfly_xingqiao.definitions import DefinitionError, TaskSpec, Workflow, validate
from butterfly_xingqiao.flowtypes import load_plugins
from butterfly_xingqiao.lifecycle import FLOW_MOVES, TASK_MOVES, IllegalMove
from butterfly_xingqiao.models import MODELS, Job, Signal, Task, Trigger


def errors_of(specs: list[TaskSpec]) -> list[str]:
    with pytest.raises(DefinitionError) as caught:
        validate(specs)
    return caught.value.errors


def test_validation_names_every_bad_task():
    assert errors_of([]) == ["a flow needs at least one task"]
    errs = errors_of([TaskSpec("a", "/x/y", dependencies=["a"]),
                      TaskSpec("b", "/x/y", dependencies=["ghost"]),
                      TaskSpec("c", "no-slash"), TaskSpec("d", "/x/y", timeout=0),
                      TaskSpec("e", "/x/y", retry_backoff="linear"),
                      TaskSpec("f", "/x/{y}"), TaskSpec("g", "/x/y", params=[1])])
    braces = next(e for e in errs if e.startswith("task f: "))
    assert "braces" in braces
    assert sorted(errs) == ["task a: depends on itself", "task b: unknown dependency ghost",
                            "task c: cmd must be a handler path /app/handler, not 'no-slash'",
                            "task d: timeout must be a number of seconds > 0",
                            "task e: retry_backoff must be one of fixed, exponential",
                            braces, "task g: params must be an object"]


def test_cycles_are_found_and_named():
    errs = errors_of([TaskSpec("a", "/x/y", dependencies=["b"]),
                      TaskSpec("b", "/x/y", dependencies=["c"]),
                      TaskSpec("c", "/x/y", dependencies=["a"]), TaskSpec("d", "/x/y")])
    assert len(errs) == 1 and "dependency cycle" in errs[0]
    path = errs[0].split("cycle ")[1].split(" -> ")
    assert path[0] == path[-1] and set(path) == {"a", "b", "c"}
    deep = [TaskSpec(f"t{i}", "/x/y", dependencies=[f"t{i - 1}"] if i else [])
            for i in range(400)]
    assert validate(deep) == deep  # no recursion limit on long chains


def test_trigger_rules_table():
    r = dataflow.readiness
    assert r("all_success", []) == "ready"
    assert r("all_success", ["finished", "finished"]) == "ready"
    assert r("all_success", ["finished", "started"]) == "wait"
    assert r("all_success", ["failed", "started"]) == "skip"
    assert r("all_success", ["skipped"]) == "skip"
    assert r("all_done", ["failed", "finished", "skipped"]) == "ready"
    assert r("all_done", ["failed", "retrying"]) == "wait"
    assert r("one_failed", ["timed_out", "started"]) == "ready"
    assert r("one_failed", ["finished", "started"]) == "wait"
    assert r("one_failed", ["finished", "skipped"]) == "skip"


def test_resolve_priorities_and_missing_names():
    deps = [{"stat": "OK", "x": 1, "y": 1}, {"stat": "OK", "y": 2}]
    params, missing = dataflow.resolve(None, ["x", "y", "z", "all_taskdata"], deps,
                                       {"z": "job"}, {"z": "task"})
    assert params == {"x": 1, "y": 2, "z": "task", "all_taskdata": deps} and missing == []
    assert dataflow.resolve(None, ["q", "x"], deps, {}, {})[1] == ["q"]
    assert dataflow.resolve({"p": 1}, ["ignored"], [], {}, {}) == ({"p": 1}, [])
    assert dataflow.resolve(None, [], deps, {"a": 1}, {}) == ({}, [])
    assert dataflow.resolve(None, ["all_taskdata"], [], {}, {}) == ({"all_taskdata": []}, [])
    assert dataflow.saved_data({"stat": "OK", "data": [1]}) == [1]
    assert dataflow.saved_data({"stat": "OK", "a": 1}) == {"a": 1}


def test_lifecycles_from_the_machines():
    assert TASK_MOVES["dispatch"] == {"waiting": "pending"}
    assert TASK_MOVES["succeed"] == {"pending": "finished", "started": "finished",
                                     "retrying": "finished"}
    assert set(TASK_MOVES["reset"]) == {"finished", "failed", "skipped", "canceled",
                                        "timed_out"}
    assert FLOW_MOVES["finish"] == {"started": "finished"}
    assert "finished" not in TASK_MOVES["fail"]  # nothing regresses a finished task


@pytest.fixture
def sqlite(tmp_path):
    configure(load_settings({"BUTTERFLY_DATA_DIR": str(tmp_path)}))
    db.create_tables(MODELS)
    with db.database.connection_context():
        yield


def test_cas_moves_happen_once_and_never_regress(sqlite):
    job = Job.create(job_namespace="n", job_name="j", job_type="t", is_valid=True)
    task = Task.create(job_id=job.job_id, task_label="a", task_cmd="/x/y")
    first, second = Task.get_by_id(task.task_id), Task.get_by_id(task.task_id)
    assert store.move_task(first, "dispatch", job_started=True, task_reqid="m1")
    assert not store.move_task(second, "dispatch", job_started=True)  # lost the race
    assert store.move_task(first, "succeed", msg_id="m1")
    stale = Task.get_by_id(task.task_id)
    stale.task_status = "started"  # a reordered notice thinking it is still running
    assert not store.move_task(stale, "retry", msg_id="m1")
    with pytest.raises(IllegalMove):
        store.move_task(Task.get_by_id(task.task_id), "fail")
    assert Task.get_by_id(task.task_id).task_status == "finished"
    # no dispatch once the flow is no longer running
    other = Task.create(job_id=job.job_id, task_label="b", task_cmd="/x/y")
    assert store.move_job(job, "cancel")
    assert not store.move_task(other, "dispatch", job_started=True)
    assert store.move_job(Job.get_by_id(job.job_id), "restart")



def test_a_move_writes_its_fields_as_peewee_would(sqlite):
    """move_task's SQL is built once per shape: the same shape with other values, and
    fields of every kind (None, float, text, int), land exactly in the row."""
    job = Job.create(job_namespace="n", job_name="j", job_type="t", is_valid=True)
    rows = [Task.create(job_id=job.job_id, task_label=label, task_cmd="/x/y")
            for label in ("a", "b")]
    for row, deadline in zip(rows, (None, 12.5), strict=True):
        assert store.move_task(row, "dispatch", job_started=True, task_run=3,
                               task_reqid=f"m-{row.task_label}", task_deadline=deadline)
        fresh = Task.get_by_id(row.task_id)
        assert (fresh.task_status, fresh.task_run, fresh.task_reqid, fresh.task_deadline) \
            == ("pending", 3, f"m-{row.task_label}", deadline)
        assert fresh.u_ts == row.u_ts and fresh.u_time is not None
    assert store.move_task(rows[0], "succeed", msg_id="m-a", ret_data='{"x": 1}',
                           task_reason=None, task_cost=0.25)
    fresh = Task.get_by_id(rows[0].task_id)
    assert (fresh.task_status, fresh.ret_data, fresh.task_cost) == ("finished", '{"x": 1}',
                                                                    0.25)
    assert not store.move_task(rows[1], "succeed", msg_id="m-other")  # fenced by attempt


def test_prepared_selects_give_the_rows_peewee_gives(sqlite):
    job = Job.create(job_namespace="n", job_name="j", job_type="t", is_valid=True)
    other = Job.create(job_namespace="n", job_name="k", job_type="t", is_valid=True)
    parent = Task.create(job_id=job.job_id, task_label="m", task_cmd="/x/y", task_reqid="r0")
    Task.create(job_id=job.job_id, task_label="m[0]", task_cmd="/x/y", task_parent=parent.task_id)
    Task.create(job_id=other.job_id, task_label="z", task_cmd="/x/y", task_reqid="r1")

    def data(rows):
        return [r.__data__ for r in rows]

    for items in (True, False):
        query = Task.select().where(Task.job_id == job.job_id)
        if not items:
            query = query.where(Task.task_parent == 0)
        assert data(engine.tasks_of(job.job_id, items)) == data(query.order_by(Task.task_id))
    assert [t.task_label for t in engine.tasks_of(job.job_id)] == ["m", "m[0]"]
    row = engine._NOTICED.rows("r1")[0]
    assert (row.task_label, row.flow.job_id, row.flow.job_name) == ("z", other.job_id, "k")
    assert isinstance(row.c_time, type(Task.get_by_id(row.task_id).c_time))
    assert engine._NOTICED.rows("nope") == []

def test_plugins_load_from_a_folder_and_report_broken_files(tmp_path):
    (tmp_path / "good.py").write_text(
        "from butterfly_xingqiao.definitions import Workflow\n"
        "class Two(Workflow):\n"
        "    def workflow(self):\n"
        "        self.add_task('a', '/x/y')\n"
        "        self.add_task('b', '/x/y', dependencies=['a'], retrymax=2, timeout=5)\n"
        "def setup(app):\n"
        "    app.register_formatter('two', Two)\n")
    (tmp_path / "broken.py").write_text("raise RuntimeError('nope')\n")
    (tmp_path / "nosetup.py").write_text("x = 1\n")
    (tmp_path / "dup.py").write_text(
        "from butterfly_xingqiao.plugins.demo import Ping\n"
        "def setup(app):\n    app.register_formatter('ping', Ping)\n")
    loaded = load_plugins(str(tmp_path))
    assert {"ping", "hello", "hello_params", "two"} == set(loaded.types)
    assert "RuntimeError: nope" in loaded.errors[str(tmp_path / "broken.py")]
    assert loaded.errors[str(tmp_path / "nosetup.py")] == "no setup(app) function"
    assert "registered twice" in loaded.errors[str(tmp_path / "dup.py")]
    specs = loaded.types["two"]({}).build()
    assert [s.label for s in specs] == ["a", "b"] and specs[1].retrymax == 2


def test_workflow_params_check_refuses():
    class Strict(Workflow):
        def params_check(self):
            if "who" not in self.job_extra:
                raise ValueError("who is required")

        def workflow(self):
            self.add_task("a", "/x/y")

    with pytest.raises(ValueError, match="who"):
        Strict({}).build()
    assert len(Strict({"who": 1}).build()) == 1


@pytest.fixture(params=["sqlite", "mariadb"])
def any_db(request, tmp_path):
    """An empty database of each kind the fleet runs on."""
    from butterfly_common.testing import mariadb_database

    if request.param == "sqlite":
        configure(load_settings({"BUTTERFLY_DATA_DIR": str(tmp_path)}))
        yield
        return
    with mariadb_database("bf_xqmig") as url:
        configure(load_settings({"BUTTERFLY_DATA_DIR": str(tmp_path), "BUTTERFLY_DB_URL": url}))
        yield
        db.database.close()


def test_migrate_adds_the_columns_an_older_release_lacks(any_db):
    """An older release's tables (made here by dropping the newer columns and indexes),
    then start-up's steps: migrate, create_tables. The columns come back with their
    defaults on old rows, the new index too, and a second start changes nothing."""
    from playhouse.migrate import SchemaMigrator
    from playhouse.migrate import migrate as run

    from butterfly_xingqiao import migrations

    new_task_columns = ["task_map_over", "task_max_parallel", "task_map_as", "task_parent",
                        "task_map_index", "task_signal", "task_on_timeout", "task_default",
                        "task_subflow", "task_subflow_version", "task_child",
                        "task_undo", "task_saga", "task_undoes"]
    new_job_columns = ["job_version", "job_trace", "job_parent_id", "job_parent_task",
                       "job_on_failure"]
    db.create_tables(MODELS)
    with db.database.connection_context():
        migrator = SchemaMigrator.from_database(db.database.obj)
        run(migrator.drop_index("workflow_task", "workflow_task_task_parent_task_status"),
            migrator.drop_index("workflow_job", "workflow_job_job_parent_id"))
        run(*[migrator.drop_column("workflow_task", c) for c in new_task_columns],
            *[migrator.drop_column("workflow_job", c) for c in new_job_columns])
        db.database.drop_tables([Signal, Trigger])
        db.database.execute_sql(
            "INSERT INTO workflow_job (job_namespace, job_reqid, job_name, job_status, "
            "job_type, job_type_version, ret_stat, job_cost, job_timeout, exe_id, job_token, "
            "operator, job_client, is_valid, c_time, s_time, s_ts) VALUES ('n', '', 'old', "
            "'finished', 't', 0, 'OK', 0, 60, 1, '', '-', '', 1, '2026-01-01 00:00:00', "
            "'2026-01-01 00:00:00', 0)")
    assert sorted(migrations.migrate()) == sorted(
        [f"workflow_job.{c}" for c in new_job_columns]
        + ["workflow_task.workflow_task_task_parent_task_status"]
        + [f"workflow_task.{c}" for c in new_task_columns])
    db.create_tables(MODELS)
    assert migrations.migrate() == []  # idempotent
    with db.database.connection_context():
        old = Job.get(Job.job_name == "old")
        assert (old.job_version, old.job_trace, old.job_parent_id, old.job_parent_task,
                old.job_on_failure) == ("", "", 0, 0, None)
        assert "workflow_job_job_parent_id" in {
            i.name for i in db.database.get_indexes("workflow_job")}  # cancel finds children
        assert db.database.table_exists("workflow_signal")
        assert db.database.table_exists("workflow_trigger")
        names = {i.name for i in db.database.get_indexes("workflow_trigger")}
        assert "workflow_trigger_name" in names, names  # unique: one trigger per name
        names = {i.name for i in db.database.get_indexes("workflow_task")}
        assert "workflow_task_task_parent_task_status" in names, names
        task = Task.create(job_id=1, task_label="a", task_cmd="/x/y")
        assert (task.task_parent, task.task_on_timeout, task.task_map_as) == (0, "fail",
                                                                              "item")
        assert (task.task_subflow, task.task_child) == (None, 0)
        assert (task.task_undo, task.task_saga, task.task_undoes) == (None, None, None)


def test_saga_begins_once_however_often_and_wherever_the_verdict_comes(any_db):
    """Four replicas reach the failed verdict of one flow at once, each with the task list
    it read before any compensation existed: one set of compensation tasks is made, and
    every caller is told to advance again (so none ends the flow before it ran)."""
    import threading

    from butterfly_xingqiao import engine, saga
    from butterfly_xingqiao.models import dumps, loads

    db.create_tables(MODELS)
    hook = {"label": "alert", "cmd": "/x/alert", "params": {"to": "ops"}, "retrymax": 2,
            "timeout": None}
    with db.database.connection_context():
        job = Job.create(job_namespace="n", job_name="j", job_type="t", is_valid=True,
                         job_on_failure=dumps([hook]))
        for label, status, u_ts in (("a", "finished", 1.0), ("b", "finished", 2.0),
                                    ("c", "finished", 3.0), ("d", "failed", 4.0)):
            Task.create(job_id=job.job_id, task_label=label, task_cmd="/x/y",
                        task_status=status, u_ts=u_ts, ret_data=dumps({"stat": "OK",
                                                                       "v": label}),
                        task_undo=None if label == "b" else dumps({"cmd": "/x/undo"}),
                        ret_stat="ERR_X" if status == "failed" else "OK",
                        task_reason="task d: boom" if status == "failed" else None)
        stale = engine.tasks_of(job.job_id)
    told: list[bool] = []
    gate = threading.Barrier(4)

    def verdict() -> None:
        with db.database.connection_context():
            gate.wait()
            told.append(saga.begin(Job.get_by_id(job.job_id), list(stale)))

    threads = [threading.Thread(target=verdict) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert told == [True] * 4
    with db.database.connection_context():
        rows = {t.task_label: t for t in engine.tasks_of(job.job_id) if t.task_saga}
        assert list(rows) == ["undo:c", "undo:a", "alert"]  # latest finished first; b: none
        assert [rows[k].task_dependencies for k in rows] == ["", "undo:c", "undo:a"]
        assert {t.task_trigger_rule for t in rows.values()} == {"all_done"}
        assert loads(rows["undo:c"].task_params) == {"saga": {
            "failed": {"label": "d", "reason": "task d: boom", "ret_stat": "ERR_X"},
            "undoes": "c", "result": {"v": "c"}}}
        assert loads(rows["alert"].task_params)["to"] == "ops"
        assert rows["alert"].task_retrymax == 2
        fresh = engine.tasks_of(job.job_id)
        assert saga.begin(job, fresh) is False  # compensated already: the flow ends
        # a flow that ended (or restarted) meanwhile is not compensated by a stale verdict
        Task.delete().where(Task.task_saga.is_null(False)).execute()
        assert store.move_job(job, "fail")
        assert saga.begin(job, stale) is False and saga.record(job.job_id) == []
