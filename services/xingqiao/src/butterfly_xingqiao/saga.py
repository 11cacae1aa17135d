"""Compensation (a saga): what a failed flow undoes before it ends.

A step may declare ``undo: {cmd, params, retrymax, timeout}``, a flow type ``on_failure``
tasks. When every task of a flow ended and one failed (the engine's verdict), instead of
ending the flow, :func:`begin` creates its compensation tasks - one ``undo:<label>`` per
FINISHED step with an undo, latest finished first, then the ``on_failure`` tasks - each
depending on the one before (``all_done``: a failed undo does not stop the next). They
are ordinary tasks of the still ``started`` flow: queued, retried, timed out and swept
as any; once they all ended the verdict fails the flow (``ERR_JOB_COMPENSATION_FAILED``
when one of them failed too). Each gets its params plus ``saga``: the failed task's
``{label, reason, ret_stat}``, the step it ``undoes`` and that step's saved ``result``.

Exactly once: :func:`begin` inserts them in one transaction holding the flow's row lock,
only while the flow still runs this attempt (``exe_id``) and has none yet; the unique
(job_id, task_label) index refuses a second set anyway.
"""

from __future__ import annotations

import time
from typing import Any

import peewee

from . import dataflow, store
from .definitions import UNDO_PREFIX, TaskSpec
from .lifecycle import TASK_BAD
from .models import Job, Task, dumps, loads

ERR_JOB_COMPENSATION_FAILED = "ERR_JOB_COMPENSATION_FAILED"
#: A compensation task's first attempt counts on from the flow's run (``exe_id``), so
#: tasks made again after a retry_job never reuse a deleted row's message ids.
RUNS_PER_EXE = 1000


def split(specs: list[TaskSpec]) -> tuple[list[TaskSpec], str | None]:
    """The flow's steps, and its on_failure tasks as the JSON its row keeps (or None)."""
    hooks = [{"label": s.label, "cmd": s.cmd, "params": s.params, "retrymax": s.retrymax,
              "timeout": s.timeout} for s in specs if s.on_failure]
    return [s for s in specs if not s.on_failure], dumps(hooks) if hooks else None


def undo_json(spec: TaskSpec) -> str | None:
    """What a step's row keeps of its ``undo``."""
    return dumps(spec.undo) if spec.undo else None


def is_compensation(task: Task) -> bool:
    return task.task_saga is not None


def _context(tasks: list[Task]) -> dict[str, Any]:
    """The failed task the compensation answers: the first one that failed."""
    bad = sorted((t for t in tasks if t.task_status in TASK_BAD and not is_compensation(t)),
                 key=lambda t: (t.u_ts or 0.0, t.task_id))
    first = bad[0] if bad else None
    return {"label": first.task_label if first else None,
            "reason": first.task_reason if first else None,
            "ret_stat": first.ret_stat if first else None}


def _rows(job: Job, tasks: list[Task]) -> list[dict[str, Any]]:
    failed = _context(tasks)
    steps = sorted((t for t in tasks if t.task_status == "finished" and t.task_undo
                    and not is_compensation(t)),
                   key=lambda t: (t.u_ts or 0.0, t.task_id), reverse=True)
    calls: list[tuple[str, str, str | None, dict[str, Any], Any]] = []
    for step in steps:
        undo = loads(step.task_undo, {})
        result = dataflow.saved_data(loads(step.ret_data, {}))
        calls.append((f"{UNDO_PREFIX}{step.task_label}", "undo", step.task_label, undo,
                      result))
    for hook in loads(job.job_on_failure, []):
        calls.append((hook["label"], "on_failure", None, hook, None))
    rows: list[dict[str, Any]] = []
    now = time.time()
    for label, kind, undoes, call, result in calls:
        params = {**(call.get("params") or {}),
                  "saga": {"failed": failed, "undoes": undoes, "result": result}}
        rows.append({"job_id": job.job_id, "task_label": label, "task_cmd": call["cmd"],
                     "task_params": dumps(params),
                     "task_dependencies": rows[-1]["task_label"] if rows else "",
                     "task_trigger_rule": "all_done",
                     "task_retrymax": int(call.get("retrymax") or 0),
                     "task_timeout": call.get("timeout"), "task_saga": kind,
                     "task_undoes": undoes, "task_run": job.exe_id * RUNS_PER_EXE,
                     "u_ts": now})
    return rows


def begin(job: Job, tasks: list[Task]) -> bool:
    """The flow failed (every task of ``tasks`` ended, one badly): create its compensation
    tasks unless it has some or nothing to compensate. True when the flow now has
    compensation tasks ``tasks`` did not show (the caller advances it again), False when
    the flow ends now."""
    if any(is_compensation(t) for t in tasks):
        return False  # compensated already: the flow ends
    rows = _rows(job, tasks)
    if not rows:
        return False

    def step() -> bool:
        with store.tx():
            running = store.locked(Job.select(Job.job_id).where(
                (Job.job_id == job.job_id) & (Job.job_status == "started")
                & (Job.exe_id == job.exe_id))).first()
            if running is None:
                return False  # ended or restarted meanwhile: not ours to compensate
            if Task.select().where((Task.job_id == job.job_id)
                                   & Task.task_saga.is_null(False)).exists():
                return True  # another process began it: advance with the fresh rows
            Task.insert_many(rows).execute()
        return True

    try:
        return store.busy_retry(step)
    except peewee.IntegrityError:  # a racing process inserted the same labels first
        return True


def failed_stat(tasks: list[Task], default: str) -> str:
    """The failed flow's stat: ``ERR_JOB_COMPENSATION_FAILED`` when a compensation task
    failed too, else ``default``."""
    if any(is_compensation(t) and t.task_status in TASK_BAD for t in tasks):
        return ERR_JOB_COMPENSATION_FAILED
    return default


def record(job_id: int) -> list[dict[str, Any]]:
    """The flow's compensation as its detail shows it, in the order it runs."""
    rows = (Task.select(Task.task_id, Task.task_label, Task.task_saga, Task.task_undoes,
                        Task.task_status, Task.ret_stat, Task.task_reason)
            .where((Task.job_id == job_id) & Task.task_saga.is_null(False))
            .order_by(Task.task_id))
    return [{"task_id": t.task_id, "label": t.task_label, "kind": t.task_saga,
             "undoes": t.task_undoes, "status": t.task_status, "ret_stat": t.ret_stat,
             "reason": t.task_reason} for t in rows]
