"""Operator actions on flows: create, retry from failure, rerun a task, cancel, delete.

Each refuses with a :class:`~butterfly_common.Refusal` (stable stat + reason naming the
problem) and otherwise changes rows only through the CAS moves of ``store.py``.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import time
from typing import Any

import peewee
from redis.exceptions import RedisError

from butterfly_common import Refusal, mq, tracing
from butterfly_common.discovery import Route
from butterfly_common.middleware import Middleware
from butterfly_common.params import ParamError
from butterfly_common.request import Request
from butterfly_common.runtime import get_config

from . import engine, flowtypes, saga, signals, store
from .config import XingqiaoConfig
from .definitions import DefinitionError, TaskSpec, validate
from .lifecycle import FLOW_DONE, TASK_ACTIVE, TASK_DONE
from .models import Job, Signal, Task, dumps, loads, now_dt, split_list

ERR_JOB_EXIST = "ERR_JOB_EXIST"
ERR_JOB_NOT_EXIST = "ERR_JOB_NOT_EXIST"
ERR_JOB_TYPE_NOT_EXISTS = "ERR_JOB_TYPE_NOT_EXISTS"
ERR_JOB_EXTRA_INVALID = "ERR_JOB_EXTRA_INVALID"
ERR_JOB_CREATE_FAILED = "ERR_JOB_CREATE_FAILED"
ERR_JOB_STATUS_NOT_FAILED = "ERR_JOB_STATUS_NOT_FAILED"
ERR_JOB_NOT_RUNNING = "ERR_JOB_NOT_RUNNING"
ERR_JOB_RUNNING = "ERR_JOB_RUNNING"
ERR_TASK_NOT_EXIST = "ERR_TASK_NOT_EXIST"
ERR_TASK_RUNNING = "ERR_TASK_RUNNING"
ERR_JOB_VERSION_NOT_EXIST = "ERR_JOB_VERSION_NOT_EXIST"
ERR_TASK_IS_MAP_ITEM = "ERR_TASK_IS_MAP_ITEM"
ERR_SIGNAL_UNKNOWN = "ERR_SIGNAL_UNKNOWN"
ERR_SIGNAL_PAYLOAD_INVALID = "ERR_SIGNAL_PAYLOAD_INVALID"
ERR_TASK_IS_COMPENSATION = "ERR_TASK_IS_COMPENSATION"

HTTP_CODES = {
    ERR_JOB_EXIST: 409, ERR_JOB_NOT_EXIST: 404, ERR_JOB_TYPE_NOT_EXISTS: 404,
    ERR_JOB_EXTRA_INVALID: 400, ERR_JOB_CREATE_FAILED: 400, ERR_JOB_STATUS_NOT_FAILED: 409,
    ERR_JOB_NOT_RUNNING: 409, ERR_JOB_RUNNING: 409, ERR_TASK_NOT_EXIST: 404,
    ERR_TASK_RUNNING: 409, ERR_JOB_VERSION_NOT_EXIST: 404, ERR_TASK_IS_MAP_ITEM: 409,
    ERR_SIGNAL_UNKNOWN: 404, ERR_SIGNAL_PAYLOAD_INVALID: 400, ERR_TASK_IS_COMPENSATION: 409,
    # raised by the flow-type and graph routes
    "ERR_FLOW_TYPE_INVALID": 400, "ERR_FLOW_TYPE_IS_PLUGIN": 409,
    "ERR_FLOW_TYPE_NOT_EXIST": 404, "ERR_GRAPH_FAILED": 503, "ERR_NOT_FROM_QUEUE": 403,
}


def refuse(stat: str, reason: str, data: dict[str, Any] | None = None) -> Refusal:
    """A Refusal; its HTTP code comes from the service's map (:data:`HTTP_CODES`)."""
    return Refusal(stat, reason, data)


def parse_extra(job_extra: Any) -> dict[str, Any]:
    """job_extra as the original took it: a JSON object, or a string holding one."""
    if job_extra is None or job_extra == "":
        return {}
    if isinstance(job_extra, str):
        try:
            job_extra = json.loads(job_extra)
        except ValueError as exc:
            raise refuse(ERR_JOB_EXTRA_INVALID, f"job_extra is not JSON: {exc}") from None
    if not isinstance(job_extra, dict):
        raise refuse(ERR_JOB_EXTRA_INVALID, "job_extra must be a JSON object")
    return job_extra


def build_tasks(job_type: str, extra: dict[str, Any],
                job_version: str | None = None) -> tuple[list[TaskSpec], int, str]:
    """The tasks of a new flow of ``job_type``, the JSON type version (0: plugin) and the
    version string the flow records (the JSON version, or the plugin's content hash).
    ``job_version`` pins one: any stored version of a JSON type; for a plugin only the
    loaded one (its code is what runs), so an older hash is refused."""
    loaded = flowtypes.plugins()
    cls = loaded.types.get(job_type)
    if cls is not None:
        digest = loaded.hashes.get(job_type, "")
        if job_version is not None and job_version != digest:
            raise refuse(ERR_JOB_VERSION_NOT_EXIST, f"flow type {job_type} is plugin "
                          f"version {digest}; version {job_version!r} is not loaded (a "
                          "plugin runs only its loaded version)")
        runner = cls(extra)
        try:
            return runner.build(), 0, digest
        except DefinitionError as exc:
            raise refuse(ERR_JOB_CREATE_FAILED, f"flow type {job_type}: {exc}",
                          {"errors": exc.errors}) from None
        except Exception as exc:  # params_check refused, or the plugin is broken
            raise refuse(ERR_JOB_CREATE_FAILED, f"flow type {job_type}: "
                                                 f"{type(exc).__name__}: {exc}") from None
    if job_version is None:
        row = flowtypes.latest_json_type(job_type)
    else:
        number = job_version.strip()
        if not number.isdigit() or not 0 < int(number) < 2**31:
            raise ParamError("invalid: job_version (a JSON flow type's version is a whole "
                             "number >= 1; a plugin's is its content hash)")
        row = flowtypes.json_type_version(job_type, int(number))
        if row is None and flowtypes.latest_json_type(job_type) is not None:
            raise refuse(ERR_JOB_VERSION_NOT_EXIST, f"flow type {job_type} has no version "
                                                     f"{int(number)}")
    if row is None:
        raise refuse(ERR_JOB_TYPE_NOT_EXISTS, f"no flow type {job_type!r} (plugins: "
                      f"{', '.join(sorted(loaded.types))}; or flow_type_create)")
    specs, required = flowtypes.json_type_specs(row)
    missing = [name for name in required if name not in extra]
    if missing:
        raise refuse(ERR_JOB_EXTRA_INVALID, f"flow type {job_type} needs job_extra keys: "
                                             f"{', '.join(missing)}")
    return validate(specs), row.version, str(row.version)


def create_job(*, job_namespace: str, job_type: str, job_name: str | None, job_extra: Any,
               job_timeout: int | None, reqid: str, operator: str, client: str,
               job_version: str | None = None, parent: tuple[int, int] = (0, 0)) -> int:
    """Insert the flow and its tasks in one transaction, then dispatch its first tasks.
    The tasks are the flow's own rows from here on: a later version of its type, or a
    plugin reload, never changes a flow that exists (it keeps ``job_version``).
    ``parent``: (job_id, task_id) of the sub-flow task creating it, (0, 0) for none."""
    extra = parse_extra(job_extra)
    specs, version, version_text = build_tasks(job_type, extra, job_version)
    specs, on_failure = saga.split(specs)
    timeout = job_timeout or get_config(XingqiaoConfig).job_timeout
    # tracing on: the flow is a span, and its context is stored with it, so every task
    # dispatched later (by any replica, after any restart) is a child of it
    with tracing.span(f"flow {job_type}", {"butterfly.job_namespace": job_namespace,
                                           "butterfly.job_type": job_type,
                                           "butterfly.job_version": version_text}) as span:
        trace = tracing.traceparent()

        def insert() -> Job:
            with store.tx():
                job = Job.create(job_namespace=job_namespace, job_reqid=reqid,
                                 job_name=job_name or reqid, job_type=job_type,
                                 job_type_version=version, job_version=version_text,
                                 job_extra=dumps(extra),
                                 job_timeout=timeout, job_token=secrets.token_hex(3),
                                 operator=operator, job_client=client[:64], s_ts=time.time(),
                                 job_trace=trace, job_parent_id=parent[0],
                                 job_parent_task=parent[1], job_on_failure=on_failure)
                Task.insert_many([_task_row(job.job_id, spec) for spec in specs]).execute()
                Job.update(is_valid=True).where(Job.job_id == job.job_id).execute()
            return job

        try:
            job = store.busy_retry(insert)
        except peewee.IntegrityError:
            raise refuse(ERR_JOB_EXIST, f"a flow named {job_name or reqid!r} exists") from None
        if span is not None:
            span.set_attribute("butterfly.job_id", int(job.job_id))
        engine.advance(job.job_id)
    return int(job.job_id)


def _task_row(job_id: int, spec: TaskSpec) -> dict[str, Any]:
    return {
        "job_id": job_id, "task_label": spec.label, "task_cmd": spec.cmd,
        "task_params": dumps(spec.params) if spec.params is not None else None,
        "task_requires": ",".join(spec.requires), "task_provides": ",".join(spec.provides),
        "task_dependencies": ",".join(spec.dependencies),
        "task_extra": dumps(spec.extra) if spec.extra else None,
        "task_is_save": spec.is_save, "task_retrymax": spec.retrymax,
        "task_retry_delay": spec.retry_delay, "task_retry_backoff": spec.retry_backoff,
        "task_timeout": spec.timeout, "task_trigger_rule": spec.trigger_rule,
        "task_map_over": spec.map_over, "task_max_parallel": spec.max_parallel,
        "task_map_as": spec.map_as, "task_signal": spec.signal,
        "task_on_timeout": spec.on_timeout,
        "task_default": dumps(spec.default) if spec.default is not None else None,
        "task_approval": spec.approval, "task_undo": saga.undo_json(spec),
        "task_subflow": spec.subflow["type"] if spec.subflow else None,
        "task_subflow_version": str(spec.subflow["version"])
        if spec.subflow and spec.subflow.get("version") is not None else None,
        "u_ts": time.time(),
    }


class StoreRefusals(Middleware):
    """A store outage a handler let through means 503 to the caller, not a 500."""

    def on_exception(self, req: Request, route: Route, exc: Exception) -> Refusal | None:
        return refusal_of(exc)


def refusal_of(exc: Exception) -> Refusal | None:
    """What a store outage a handler let through means to the caller: 503, not a 500."""
    if isinstance(exc, peewee.OperationalError | peewee.InterfaceError):
        return Refusal("ERR_DB_UNAVAILABLE", f"database busy or unreachable: {exc}"[:300],
                       http=503)
    if isinstance(exc, RedisError):
        return Refusal("ERR_MQ_UNAVAILABLE", f"queue store unreachable: {exc}"[:300], http=503)
    return None


def get_job(job_id: int) -> Job:
    job = Job.get_or_none((Job.job_id == job_id) & (Job.is_valid == True))  # noqa: E712
    if job is None:
        raise refuse(ERR_JOB_NOT_EXIST, f"no flow with job_id {job_id}")
    return job


def get_task(task_id: int) -> Task:
    task = Task.get_or_none(Task.task_id == task_id)
    if task is None:
        raise refuse(ERR_TASK_NOT_EXIST, f"no task with task_id {task_id}")
    return task


def downstream(tasks: list[Task], labels: set[str]) -> set[str]:
    """``labels`` and every task that depends on them, transitively."""
    found = set(labels)
    changed = True
    while changed:
        changed = False
        for t in tasks:
            if t.task_label not in found and found & set(split_list(t.task_dependencies)):
                found.add(t.task_label)
                changed = True
    return found


_RESET = {"task_status": "waiting", "task_retrycount": 0, "ret_stat": None, "ret_data": None,
          "task_reason": None, "task_deadline": None, "task_due": None, "task_reqid": "",
          "task_cost": 0.0, "task_child": 0}


def _restart(job: Job, tasks: list[Task], labels: set[str],
             params: dict[str, Any] | None = None, rerun: str | None = None) -> None:
    """One transaction: the flow back to started (if it ended), the tasks back to waiting.
    ``retry_job`` (no ``rerun``) keeps a map's finished items (only the others run
    again); ``rerun_task`` drops the items of every map it resets, so they are made again
    from the list as it is then."""
    store.busy_retry(lambda: _restart_tx(job, tasks, labels, params, rerun))


def _restart_tx(job: Job, tasks: list[Task], labels: set[str],
                params: dict[str, Any] | None, rerun: str | None) -> None:
    now = time.time()
    with store.tx():
        if job.job_status in FLOW_DONE and not store.move_job(
                job, "restart", exe_id=job.exe_id + 1, s_ts=now, s_time=now_dt(),
                e_time=None, ret_stat="OK", job_cost=0.0):
            raise refuse(ERR_JOB_STATUS_NOT_FAILED, "the flow changed meanwhile; read it "
                                                     "again")
        # a new run compensates its own failure, if it fails: the last one's undos go
        Task.delete().where((Task.job_id == job.job_id)
                            & Task.task_saga.is_null(False)).execute()
        ids = [t.task_id for t in tasks if t.task_label in labels]
        if rerun is not None:
            maps = [t.task_id for t in tasks if t.task_label in labels
                    and t.task_map_over is not None]
            if maps:
                Task.delete().where(Task.task_parent.in_(maps)).execute()
                ids = [t.task_id for t in tasks if t.task_label in labels
                       and t.task_parent not in maps]
        values = {getattr(Task, k): v for k, v in _RESET.items()}
        values.update({Task.u_ts: now, Task.u_time: now_dt()})
        Task.update(values).where(Task.task_id.in_(ids)
                                  & Task.task_status.in_(TASK_DONE)).execute()
        if rerun is not None and params is not None:
            Task.update(task_params=dumps(params)).where(
                (Task.job_id == job.job_id) & (Task.task_label == rerun)).execute()


def retry_job(job_id: int) -> dict[str, Any]:
    """Failed / timed-out / canceled tasks and their downstream go back to waiting;
    finished tasks keep their results, so the flow reruns from where it failed."""
    job = get_job(job_id)
    if job.job_status not in ("failed", "timed_out", "canceled"):
        raise refuse(ERR_JOB_STATUS_NOT_FAILED, f"flow {job_id} is {job.job_status}; only "
                      "failed, timed_out or canceled flows are retried")
    every = engine.tasks_of(job_id)
    tasks = [t for t in every if not saga.is_compensation(t)]
    # steps a compensation undid run again too: their effect is gone
    bad = {t.task_label for t in tasks if t.task_status != "finished"} | {
        str(t.task_undoes) for t in every if t.task_saga == "undo"}
    labels = downstream(tasks, bad)
    _restart(job, tasks, labels)
    engine.advance(job_id)
    return {"job_id": job_id, "exe_id": job.exe_id, "reset": sorted(labels)}


def rerun_task(task_id: int, params: dict[str, Any] | None) -> dict[str, Any]:
    """Run one task again and everything downstream of it (``params`` replace its fixed
    params); the flow restarts if it had ended."""
    task = get_task(task_id)
    if task.task_parent:
        raise refuse(ERR_TASK_IS_MAP_ITEM, f"task {task.task_label} is an item of a map "
                     f"(task_id {task.task_parent}): rerun the map task, or retry_job to "
                     "run its failed items again")
    if saga.is_compensation(task):
        raise refuse(ERR_TASK_IS_COMPENSATION, f"task {task.task_label} compensates the "
                     "flow's failure: retry_job or rerun one of its steps")
    job = get_job(task.job_id)
    tasks = engine.tasks_of(job.job_id)
    labels = downstream(tasks, {task.task_label})
    # a compensation under way is finished first: its rows go with the restart
    busy = sorted(t.task_label for t in tasks
                  if (t.task_label in labels and t.task_status in TASK_ACTIVE)
                  or (saga.is_compensation(t) and t.task_status not in TASK_DONE))
    if busy:
        raise refuse(ERR_TASK_RUNNING, f"tasks still running: {', '.join(busy)}; wait or "
                                        "cancel_job first")
    _restart(job, tasks, labels, params, task.task_label)
    engine.advance(job.job_id)
    return {"job_id": job.job_id, "task_id": task_id, "reset": sorted(labels)}


def cancel_job(job_id: int) -> dict[str, Any]:
    """Stop dispatching, delete queued messages and fence running ones (a late result is
    ignored by the queue), mark every unfinished task canceled."""
    job = get_job(job_id)
    if job.job_status != "started" or not store.move_job(
            job, "cancel", ret_stat="ERR_JOB_CANCELED", e_time=now_dt(),
            job_cost=round(time.time() - job.s_ts, 6)):
        raise refuse(ERR_JOB_NOT_RUNNING, f"flow {job_id} is {job.job_status}, not started")
    canceled = []
    for task in engine.tasks_of(job_id):
        if task.task_status in TASK_DONE:
            continue
        if task.task_status in TASK_ACTIVE and task.task_reqid:
            # on a Redis error, a late result's notice finds the task canceled: ignored
            with contextlib.suppress(RedisError):
                mq.broker().delete(task.task_cmd, task.task_reqid)
        if store.end_task(task, "cancel", task_reason="flow canceled"):
            canceled.append(task.task_label)
    hook = engine.SUBFLOWS.stopped  # its children go too; a sub-flow's parent task fails
    children = hook(job) if hook is not None else []
    return {"job_id": job_id, "canceled": canceled, "canceled_subflows": children}


def delete_job(job_id: int) -> dict[str, Any]:
    """Delete a flow and its tasks; refused while it runs (cancel it first)."""
    job = get_job(job_id)
    if job.job_status == "started":
        raise refuse(ERR_JOB_RUNNING, f"flow {job_id} is running; cancel_job first")
    def remove() -> int:
        with store.tx():
            n = Task.delete().where(Task.job_id == job_id).execute()
            Signal.delete().where(Signal.job_id == job_id).execute()
            Job.delete().where(Job.job_id == job_id).execute()
        return int(n)

    return {"job_id": job_id, "deleted_tasks": store.busy_retry(remove)}


def send_signal(job_id: int, name: str, payload: dict[str, Any] | None,
                operator: str) -> dict[str, Any]:
    """Keep a signal for the flow's signal tasks of ``name``; a task already waiting
    takes it at once (its payload becomes the task's result) and the flow moves on."""
    job = get_job(job_id)
    if job.job_status != "started":
        raise refuse(ERR_JOB_NOT_RUNNING, f"flow {job_id} is {job.job_status}; signals go "
                                           "to running flows")
    named = list(Task.select().where((Task.job_id == job_id)
                                     & Task.task_signal.is_null(False)))
    targets = [t for t in named if t.task_signal == name]
    if not targets:
        known = sorted({str(t.task_signal) for t in named})
        raise refuse(ERR_SIGNAL_UNKNOWN, f"flow {job_id} has no task waiting for signal "
                     f"{name!r} (its signals: {', '.join(known) or 'none'})")
    payload = payload or {}
    for task in targets:
        missing = sorted(set(split_list(task.task_provides)) - set(payload))
        if missing:
            raise refuse(ERR_SIGNAL_PAYLOAD_INVALID, f"task {task.task_label} needs payload "
                                                      f"keys: {', '.join(missing)}")
    signal = signals.send(job_id, name, payload, operator)
    taken = None
    for task in signals.waiting_tasks(job_id, name):
        if signals.take(task):
            taken = task.task_label
            engine.advance(job_id)
            break
    if taken is None:  # maybe a task took it on being reached meanwhile
        taken_by = Signal.get_by_id(signal.id).task_id
        taken = next((t.task_label for t in targets if t.task_id == taken_by), None)
    return {"job_id": job_id, "signal_id": int(signal.id), "name": name,
            "delivered_to": taken, "kept": taken is None}


def job_extra_of(job: Job) -> dict[str, Any]:
    return loads(job.job_extra, {})
