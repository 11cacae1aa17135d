"""Signal tasks: a step that waits for an outside event, ``send_signal(job_id, name,
payload)``, instead of calling a handler.

A signal is a row of ``workflow_signal``, kept until a signal task of its name takes it,
so a signal sent before its task is reached is not lost. Taking one is one transaction: a
CAS on the signal (``task_id`` 0 -> the task) and a CAS on the task (``started`` ->
``finished``, the payload as its result); whoever loses either changes nothing. Both
sides try: the task when it is reached (the oldest kept signal), the sender after storing
its signal (a task already waiting), and the sweep as a safety net; each reads after the
other's commit, so one of them always sees the other. The sweep also applies a waiting
task's ``timeout`` with its ``on_timeout`` policy: fail (``timed_out``), skip, or finish
with the ``default`` result.
"""

from __future__ import annotations

import time
from typing import Any

from . import store
from .models import Signal, Task, dumps, loads, now_dt

ERR_SIGNAL_TIMEOUT = "ERR_SIGNAL_TIMEOUT"


class _Lost(Exception):
    """The task moved meanwhile: roll the signal's CAS back."""


def reach(task: Task) -> bool:
    """A ready signal task starts waiting (its deadline set), then takes a kept signal."""
    deadline = time.time() + task.task_timeout if task.task_timeout else None
    if not store.move_task(task, "wait", job_started=True, task_deadline=deadline,
                           task_reason=None, ret_stat=None, ret_data=None):
        return False
    take(task)
    return True


def take(task: Task) -> bool:
    """Give ``task`` (waiting for its signal, ``started``) the oldest kept signal of its
    name; False when there is none or someone else moved either first."""
    if task.task_status != "started" or task.task_signal is None:
        return False
    kept = Signal.select(Signal.id).where((Signal.job_id == task.job_id)
                                          & (Signal.name == task.task_signal)
                                          & (Signal.task_id == 0))
    if not kept.exists():  # the common case (nothing sent yet): no write transaction
        return False
    source = task.task_status

    def step() -> bool:
        task.task_status = source
        with store.tx():
            signal = (Signal.select().where((Signal.job_id == task.job_id)
                                            & (Signal.name == task.task_signal)
                                            & (Signal.task_id == 0))
                      .order_by(Signal.id).first())
            if signal is None:
                return False
            if Signal.update(task_id=task.task_id, d_time=now_dt()).where(
                    (Signal.id == signal.id) & (Signal.task_id == 0)).execute() != 1:
                return False
            payload = loads(signal.payload, {})
            result = {**payload, "stat": "OK"}
            if not store.move_task(task, "succeed", job_started=True, ret_stat="OK",
                                   ret_data=dumps(result),
                                   task_cost=round(time.time() - task.u_ts, 6),
                                   task_reason=f"signal {signal.name} #{signal.id} "
                                               f"from {signal.operator}"):
                raise _Lost
        return True

    try:
        return bool(store.busy_retry(step))
    except _Lost:
        task.task_status = source
        return False


def time_out(task: Task) -> bool:
    """Apply the task's ``on_timeout``: it waited past its deadline."""
    reason = f"task {task.task_label}: no signal {task.task_signal} within " \
             f"{task.task_timeout or 0:g}s"
    policy = task.task_on_timeout
    if policy == "skip":
        return store.move_task(task, "skip", job_started=True, ret_stat=ERR_SIGNAL_TIMEOUT,
                               task_reason=f"{reason}: skipped")
    if policy == "default":
        result = {**loads(task.task_default, {}), "stat": "OK"}
        return store.move_task(task, "succeed", job_started=True, ret_stat="OK",
                               ret_data=dumps(result), task_reason=f"{reason}: default "
                                                                   "result")
    return store.move_task(task, "time_out", job_started=True, ret_stat=ERR_SIGNAL_TIMEOUT,
                           task_reason=reason)


def send(job_id: int, name: str, payload: dict[str, Any], operator: str) -> Signal:
    """Keep a signal for flow ``job_id`` (the caller checked the flow and the name)."""
    return store.busy_retry(lambda: Signal.create(job_id=job_id, name=name,
                                                  payload=dumps(payload),
                                                  operator=operator[:128]))


def waiting_tasks(job_id: int, name: str) -> list[Task]:
    return list(Task.select().where((Task.job_id == job_id) & (Task.task_signal == name)
                                    & (Task.task_status == "started"))
                .order_by(Task.task_id))


def sweep(now: float) -> set[int]:
    """Every waiting signal task: past its deadline -> its timeout policy; else take a
    kept signal (a sender that crashed before delivering). The flows that moved."""
    moved: set[int] = set()
    for task in list(Task.select().where(Task.task_signal.is_null(False)
                                         & (Task.task_status == "started"))):
        if task.task_deadline and now > task.task_deadline:
            if time_out(task):
                moved.add(task.job_id)
        elif take(task):
            moved.add(task.job_id)
    return moved


def waiting_approvals(page_index: int, page_size: int) -> dict[str, Any]:
    """Approval tasks waiting for a person, in running flows, oldest first."""
    from .models import Job

    query = (Task.select(Task, Job).join(Job, on=(Task.job_id == Job.job_id), attr="flow")
             .where(Task.task_approval.is_null(False) & (Task.task_status == "started")
                    & (Job.job_status == "started")))
    total = query.count()
    rows: Any = query.order_by(Task.u_ts, Task.task_id).paginate(page_index, page_size)
    return {"total": total, "list": [
        {"job_id": t.job_id, "job_type": t.flow.job_type, "job_name": t.flow.job_name,
         "task_id": t.task_id, "task_label": t.task_label, "signal": t.task_signal,
         "approval": t.task_approval, "since": t.u_time,
         "deadline": t.task_deadline, "on_timeout": t.task_on_timeout} for t in rows]}


def list_for(job_id: int) -> list[dict[str, Any]]:
    labels = {t.task_id: t.task_label for t in Task.select(Task.task_id, Task.task_label)
              .where((Task.job_id == job_id) & Task.task_signal.is_null(False))}
    return [{"id": s.id, "name": s.name, "payload": loads(s.payload, {}),
             "operator": s.operator, "c_time": s.c_time, "d_time": s.d_time,
             "task_id": s.task_id or None, "task_label": labels.get(s.task_id)}
            for s in Signal.select().where(Signal.job_id == job_id).order_by(Signal.id)]
