"""Sub-flow tasks: a step that creates a flow of another type, waits for it, and takes its
saved result.

Exactly one child per attempt: the child's ``job_name`` (unique in ``workflow_job``) is
derived from the parent flow, the task and the task's next run (:func:`child_key`), as a
trigger derives its flow's name from the event. The child is created first, then the task
moves ``waiting -> started`` (CAS) recording it; a crash between the two leaves the task
waiting, and the next advance (the sweep's at the latest) creates the same name again,
gets ERR_JOB_EXIST and records the child that exists. So redelivery or two replicas racing
never make a second child; ``retry_job`` resets the task, whose next run is a new name, so
a new child (the old one stays as it ended).

Event-driven end: whoever records a child flow's verdict (the engine's verdict, cancel,
the sweep's flow timeout) calls :func:`child_ended`, which moves the parent's task
(``finished`` with the child's saved result, else ``failed`` / ``timed_out`` with the
child's reason) and advances the parent flow. The sweep repairs a lost one
(:func:`sweep`): a crash between the child's verdict and the parent's move.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import time
from typing import Any

import peewee

from butterfly_common import Refusal, retstat
from butterfly_common.params import ParamError

from . import engine, operations, store
from .lifecycle import FLOW_DONE, TASK_BAD
from .models import Job, Task, dumps, loads, split_list

log = logging.getLogger("butterfly.xingqiao")

ERR_SUBFLOW_CREATE = "ERR_SUBFLOW_CREATE_FAILED"
ERR_SUBFLOW_FAILED = "ERR_SUBFLOW_FAILED"
ERR_SUBFLOW_DEPTH = "ERR_SUBFLOW_TOO_DEEP"
#: Sub-flows nest at most this deep (a type that runs itself would never stop).
MAX_DEPTH = 10


def child_key(job: Job, task: Task, run: int) -> str:
    """The child's ``job_name`` for attempt ``run`` of ``task`` (44 chars, fits 64)."""
    digest = hashlib.sha256(f"{job.job_id}\n{job.job_token}\n{task.task_id}\n{run}"
                            .encode()).hexdigest()
    return f"sub:{digest[:40]}"


def _depth(job: Job) -> int:
    depth, parent = 0, job.job_parent_id
    while parent and depth <= MAX_DEPTH:
        row = Job.select(Job.job_parent_id).where(Job.job_id == parent).first()
        parent = row.job_parent_id if row else 0
        depth += 1
    return depth


def start(job: Job, task: Task, params: dict[str, Any]) -> bool:
    """A ready sub-flow task: create its child (or find the one an earlier try created),
    then ``waiting -> started`` recording it. False when someone else moved it first."""
    run = task.task_run + 1
    key = child_key(job, task, run)
    if _depth(job) >= MAX_DEPTH:
        return store.move_task(task, "fail", job_started=True, ret_stat=ERR_SUBFLOW_DEPTH,
                               task_reason=f"task {task.task_label}: sub-flows nest at "
                                           f"most {MAX_DEPTH} deep")
    timeout = max(1, math.ceil(task.task_timeout)) if task.task_timeout else None
    try:
        child_id = operations.create_job(
            job_namespace=job.job_namespace, job_type=str(task.task_subflow), job_name=key,
            job_extra=params, job_timeout=timeout, reqid=job.job_reqid,
            operator=job.operator, client="subflow", job_version=task.task_subflow_version,
            parent=(int(job.job_id), int(task.task_id)))
    except ParamError as exc:  # a version a JSON type cannot have ("abc")
        return store.move_task(task, "fail", job_started=True, ret_stat=ERR_SUBFLOW_CREATE,
                               task_run=run, task_reason=f"task {task.task_label}: "
                               f"sub-flow {task.task_subflow}: {exc}")
    except Refusal as refusal:
        existing = Job.get_or_none(Job.job_name == key)
        if refusal.stat != operations.ERR_JOB_EXIST or existing is None:
            return store.move_task(task, "fail", job_started=True, ret_stat=refusal.stat,
                                   task_run=run, task_reason=f"task {task.task_label}: "
                                   f"sub-flow {task.task_subflow}: {refusal.reason}")
        child_id = int(existing.job_id)  # an earlier try created it: this is the one
    if not store.move_task(task, "spawn", job_started=True, task_run=run,
                           task_child=child_id, task_reason=None, ret_stat=None,
                           ret_data=None, task_deadline=None):
        fresh = Task.get_or_none(Task.task_id == task.task_id)
        parent = Job.get_or_none(Job.job_id == job.job_id)
        if parent is not None and parent.job_status != "started" and fresh is not None \
                and fresh.task_child != child_id:
            _cancel(child_id)  # the parent stopped meanwhile: its new child goes too
        return False
    child = Job.get_or_none(Job.job_id == child_id)
    if child is not None and child.job_status in FLOW_DONE:
        child_ended(child)  # it ended before the task recorded it
    return True


def _cancel(child_id: int) -> None:
    with contextlib.suppress(Refusal):  # it ended meanwhile
        operations.cancel_job(child_id)


def cancel_children(job_id: int) -> list[int]:
    """Cancel the running children of flow ``job_id`` (it was canceled or timed out)."""
    rows = list(Job.select(Job.job_id).where((Job.job_parent_id == job_id)
                                            & (Job.job_status == "started")))
    for row in rows:
        _cancel(int(row.job_id))
    return [int(r.job_id) for r in rows]


def stopped(job: Job) -> list[int]:
    """``job`` was canceled or timed out: cancel its running children and, when it is a
    sub-flow itself, move the parent task waiting for it. The children canceled."""
    children = cancel_children(int(job.job_id))
    if job.job_parent_task:
        child_ended(job)
    return children


def _result(child: Job) -> dict[str, Any]:
    saved = loads(child.ret_data, {})
    result = dict(saved) if isinstance(saved, dict) else {"data": saved}
    return {**result, "stat": retstat.OK}


def _why(child: Job) -> str:
    bad = (Task.select(Task.task_label, Task.task_reason)
           .where((Task.job_id == child.job_id) & Task.task_status.in_(TASK_BAD)
                  & (Task.task_parent == 0)).order_by(Task.task_id).first())
    detail = f": {bad.task_label}: {bad.task_reason}" if bad and bad.task_reason else ""
    return f"sub-flow {child.job_id} {child.job_status} ({child.ret_stat}){detail}"[:500]


def child_ended(child: Job) -> bool:
    """``child`` reached a final state: move its parent task (if it is still waiting for
    this child) and advance the parent flow. Idempotent (CAS): True when it moved."""
    if not child.job_parent_task or child.job_status not in FLOW_DONE:
        return False
    task = Task.get_or_none(Task.task_id == child.job_parent_task)
    if task is None or task.task_status != "started" or task.task_subflow is None:
        return False
    parent = Job.get_or_none(Job.job_id == task.job_id)
    if parent is None or parent.job_status != "started" \
            or child.job_name != child_key(parent, task, task.task_run):
        return False  # the parent stopped, or this is an older attempt's child
    cost = round(time.time() - (task.u_ts or time.time()), 6)
    if child.job_status == "finished":
        result = _result(child)
        missing = sorted(set(split_list(task.task_provides)) - set(result))
        if missing:
            moved = store.move_task(task, "fail", job_started=True,
                                    ret_stat=engine.ERR_TASK_PROVIDES, ret_data=dumps(result),
                                    task_cost=cost, task_reason=f"task {task.task_label}: "
                                    f"sub-flow result lacks provides: {', '.join(missing)}")
        else:
            moved = store.move_task(task, "succeed", job_started=True, ret_stat=retstat.OK,
                                    ret_data=dumps(result), task_cost=cost, task_reason=None)
    else:
        event = "time_out" if child.job_status == "timed_out" else "fail"
        moved = store.move_task(task, event, job_started=True, ret_stat=ERR_SUBFLOW_FAILED,
                                task_cost=cost,
                                task_reason=f"task {task.task_label}: {_why(child)}")
    if moved:
        engine.after_end(task, parent)
    return moved


def sweep() -> set[int]:
    """Started sub-flow tasks whose child already ended (its notification was lost to a
    crash): moved now. The parent flows that moved."""
    rows: Any = (Task.select(Task.task_id, Job)
                 .join(Job, on=(Task.task_child == Job.job_id), attr="child")
                 .where(Task.task_subflow.is_null(False) & (Task.task_status == "started")
                        & Job.job_status.in_(FLOW_DONE)))
    moved: set[int] = set()
    for row in list(rows):
        try:
            if child_ended(row.child):
                moved.add(int(row.child.job_parent_id))
        except peewee.OperationalError as exc:
            log.warning("sweep: sub-flow %s: %s", row.child.job_id, exc)
    return moved


def links(job: Job) -> dict[str, Any]:
    """The console's links: the flow's parent (job and task) and its sub-flow tasks'
    current children."""
    parent = None
    if job.job_parent_id:
        task = Task.get_or_none(Task.task_id == job.job_parent_task)
        parent = {"job_id": int(job.job_parent_id), "task_id": int(job.job_parent_task),
                  "task_label": task.task_label if task else None}
    children = [{"task_id": int(t.task_id), "task_label": t.task_label,
                 "child_job_id": int(t.task_child) or None}
                for t in Task.select(Task.task_id, Task.task_label, Task.task_child)
                .where((Task.job_id == job.job_id) & Task.task_subflow.is_null(False))
                .order_by(Task.task_id)]
    return {"parent": parent, "subflows": children}


# the engine and operations reach sub-flows through these (they cannot import this module)
engine.SUBFLOWS.start = start
engine.SUBFLOWS.ended = child_ended
engine.SUBFLOWS.stopped = stopped
