"""The event-driven engine: dispatch ready tasks, apply each attempt's outcome, end flows.

Nothing here sleeps or loops on a timer. A task's message is published with
``notify=/xingqiao/task_notice``; the notice (``on_notice``) reads the message's recorded
outcome, moves the task (CAS, ``store.py``) and - in the same step - dispatches the
dependents that became ready and ends the flow when no task can move any more. The sweep
(``sweep.py``) calls the same functions for notices that never came.

Message ids are derived from the task and its attempt (``xq<job>.<salt>.<task>.<run>``),
and publishing an id twice queues nothing: a dispatch that crashed between its CAS and
its publish is simply published again by the sweep, never run twice.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import Any

import peewee
from redis.exceptions import RedisError

from butterfly_common import mq, retstat, tracing
from butterfly_common.mq import FAILED, FINISHED, ErrorKind, Message
from butterfly_common.mq.broker import NO_CONSUMER
from butterfly_common.runtime import get_config

from . import dataflow, saga, signals, store
from .config import NOTICE_TOPIC, XingqiaoConfig
from .definitions import MAX_MAP_ITEMS
from .lifecycle import TASK_ACTIVE, TASK_BAD, TASK_DONE
from .models import Job, Task, dumps, loads, now_dt, split_list
from .prepared import Prepared

log = logging.getLogger("butterfly.xingqiao")

ERR_TASK_PARAMS = "ERR_TASK_REQUIRES_MISSING"
ERR_TASK_PROVIDES = "ERR_TASK_PROVIDES_MISSING"
ERR_TASK_TIMEOUT = "ERR_TASK_TIMEOUT"
ERR_JOB_EXE_FAILED = "ERR_JOB_EXE_FAILED"
ERR_JOB_EXE_TIMEOUT = "ERR_JOB_EXE_TIMEOUT"
ERR_MAP_OVER = "ERR_TASK_MAP_OVER_INVALID"
ERR_MAP_ITEM_FAILED = "ERR_MAP_ITEM_FAILED"
#: Item attempts per expansion of a map (> 1 + MAX_RETRIES): see ``_item_row``.
RUNS_PER_EXPANSION = 1000
#: What dispatching an item reads of it (a full row costs 3x as much to build).
ITEM_COLUMNS = (Task.task_id, Task.job_id, Task.task_cmd, Task.task_params, Task.task_run,
                Task.task_timeout, Task.task_status, Task.task_parent)
CLAIM_CHUNK = 200  # items per claiming UPDATE (SQLite's bound-variable limit)


def msg_id_of(job: Job, task: Task, run: int) -> str:
    return f"xq{job.job_id}.{job.job_token}.{task.task_id}.{run}"


_TASKS = Prepared(1, lambda job: Task.select().where(Task.job_id == job)
                  .order_by(Task.task_id))
_STEPS = Prepared(1, lambda job: Task.select().where((Task.job_id == job)
                                                    & (Task.task_parent == 0))
                  .order_by(Task.task_id))
#: a notice's task and its flow in one query
_NOTICED = Prepared(1, lambda msg_id: Task.select(Task, Job).join(
    Job, on=(Task.job_id == Job.job_id), attr="flow").where(Task.task_reqid == msg_id))


def tasks_of(job_id: int, items: bool = True) -> list[Task]:
    """The flow's tasks in order; without map items when ``items`` is false (a map task's
    own state stands for them: it ends only once they all did, failed if one did)."""
    return (_TASKS if items else _STEPS).rows(int(job_id))


# -- dispatching --------------------------------------------------------------------------

def _params_for(job: Job, task: Task, by_label: dict[str, Task]) -> tuple[dict, list[str]]:
    deps = [by_label[label] for label in split_list(task.task_dependencies)
            if label in by_label]
    # a map task's collected results count even when an item failed (all_done collects)
    results = [loads(d.ret_data, {}) for d in deps if d.task_status == "finished"
               or (d.task_map_over is not None and d.ret_data)]
    return dataflow.resolve(loads(task.task_params), split_list(task.task_requires),
                            results, loads(job.job_extra, {}), loads(task.task_extra, {}))


def _current_params(job: Job, task: Task) -> dict[str, Any]:
    """The params of a task's next attempt (a map item's are fixed at its creation)."""
    if task.task_parent:
        return dict(loads(task.task_params, {}))
    return _params_for(job, task, {t.task_label: t for t in tasks_of(job.job_id, items=False)})[0]


def _publish(job: Job, task: Task, params: dict[str, Any], delay: float = 0.0) -> None:
    """Queue the current attempt of ``task`` (idempotent: its id is the attempt's)."""
    cfg = get_config(XingqiaoConfig)
    # through mq.publish, so the middleware see it (a producer span under the task's)
    with tracing.span(f"task {task.task_label}", {
            "butterfly.job_id": int(job.job_id), "butterfly.task_id": int(task.task_id),
            "butterfly.task_cmd": task.task_cmd}, parent=job.job_trace):
        mq.publish(task.task_cmd, params, msg_id=task.task_reqid, delay=max(0.0, delay),
                   timeout=task.task_timeout or cfg.task_timeout, max_retries=0,
                   result_ttl=cfg.result_ttl, failure_ttl=cfg.result_ttl,
                   reqid=job.job_reqid or None, force=True, notify=NOTICE_TOPIC)


def _deadline(task: Task, delay: float) -> float | None:
    return time.time() + delay + task.task_timeout if task.task_timeout else None


def dispatch(job: Job, task: Task, by_label: dict[str, Task]) -> bool:
    """waiting -> pending (CAS, only while the flow runs) -> publish -> started."""
    params, missing = _params_for(job, task, by_label)
    if missing:
        return store.move_task(task, "fail", job_started=True, ret_stat=ERR_TASK_PARAMS,
                               task_reason=f"task {task.task_label}: required names not "
                                           f"found: {', '.join(missing)}")
    run = task.task_run + 1
    msg_id = msg_id_of(job, task, run)
    if not store.move_task(task, "dispatch", job_started=True, task_run=run,
                           task_reqid=msg_id, task_deadline=_deadline(task, 0.0)):
        return False
    try:
        _publish(job, task, params)
    except RedisError as exc:  # stays pending: the sweep publishes it again
        log.warning("publishing %s failed (the sweep retries): %s", msg_id, exc)
        return True
    if not store.move_task(task, "sent", msg_id=msg_id):
        fresh = Task.get_or_none(Task.task_id == task.task_id)
        if fresh is not None and fresh.task_status in ("canceled", "timed_out"):
            mq.broker().delete(task.task_cmd, msg_id)  # the flow stopped meanwhile: fence
    return True


def advance(job_id: int, job: Job | None = None) -> str:
    """Dispatch every ready task, skip the unreachable ones, end the flow when nothing
    can move any more. Safe to call any number of times from anywhere (CAS): ``job`` may
    be stale, every dispatch re-checks that the flow still runs."""
    job = job or Job.get_or_none(Job.job_id == job_id)
    if job is None or job.job_status != "started" or not job.is_valid:
        return job.job_status if job else "missing"
    tasks = tasks_of(job_id, items=False)  # a big map's items are its own business
    by_label = {t.task_label: t for t in tasks}
    moved = True
    while moved:  # skips cascade; a failed dispatch can make others ready
        moved = False
        for task in tasks:
            if task.task_status == "started" and task.task_map_over is not None:
                moved |= advance_map(job, task)  # items of a crashed step, or its end
                continue
            if task.task_status != "waiting":
                continue
            deps = [by_label[d].task_status for d in split_list(task.task_dependencies)
                    if d in by_label]
            verdict = dataflow.readiness(task.task_trigger_rule, deps)
            if verdict == dataflow.READY and task.task_map_over is not None:
                moved |= expand(job, task, by_label) and task.task_status in TASK_DONE
            elif verdict == dataflow.READY and task.task_signal is not None:
                moved |= signals.reach(task) and task.task_status in TASK_DONE
            elif verdict == dataflow.READY and task.task_subflow is not None:
                moved |= spawn(job, task, by_label) and task.task_status in TASK_DONE
            elif verdict == dataflow.READY:
                moved |= dispatch(job, task, by_label) and task.task_status in TASK_DONE
            elif verdict == dataflow.SKIP:
                moved |= store.move_task(task, "skip", job_started=True,
                                         task_reason=f"trigger rule {task.task_trigger_rule} "
                                                     "cannot be met")
    return _verdict(job, tasks)


def _verdict(job: Job, tasks: list[Task]) -> str:
    if any(t.task_status not in TASK_DONE for t in tasks):
        return "started"
    if any(t.task_status in TASK_BAD for t in tasks) and saga.begin(job, tasks):
        return advance(job.job_id)  # it failed: its compensation tasks run first
    now = time.time()
    saved: Any = None
    for t in tasks:
        if t.task_is_save and t.task_status == "finished":
            data = dataflow.saved_data(loads(t.ret_data, {}))
            saved = {**saved, **data} if isinstance(saved, dict) and isinstance(data, dict) \
                else data
    bad = [t.task_label for t in tasks if t.task_status in TASK_BAD]
    fields = {"e_time": now_dt(), "job_cost": round(now - job.s_ts, 6),
              "ret_data": dumps(saved if saved is not None else {})}
    if bad:
        ended = store.move_job(job, "fail",
                               ret_stat=saga.failed_stat(tasks, ERR_JOB_EXE_FAILED), **fields)
    else:
        ended = store.move_job(job, "finish", ret_stat=retstat.OK, **fields)
    if ended and job.job_parent_task and SUBFLOWS.ended is not None:
        SUBFLOWS.ended(job)  # a sub-flow: its parent's task moves on
    return job.job_status


def spawn(job: Job, task: Task, by_label: dict[str, Task]) -> bool:
    """A ready sub-flow task: its params (as any task's) become the child's job_extra."""
    params, missing = _params_for(job, task, by_label)
    if missing:
        return store.move_task(task, "fail", job_started=True, ret_stat=ERR_TASK_PARAMS,
                               task_reason=f"task {task.task_label}: required names not "
                                           f"found: {', '.join(missing)}")
    if SUBFLOWS.start is None:
        return store.move_task(task, "fail", job_started=True, ret_stat=ERR_TASK_PARAMS,
                               task_reason=f"task {task.task_label}: sub-flows are not "
                                           "loaded in this process")
    return SUBFLOWS.start(job, task, params)


class SubflowHooks:
    """Where sub-flows plug in. ``subflows.py`` creates and cancels flows through
    ``operations``, which sits above this module, so it sets these when imported (the
    service's handlers and the sweep import it) instead of being imported here."""

    def __init__(self) -> None:
        #: start a ready sub-flow task (create its child once); True when it moved
        self.start: Callable[[Job, Task, dict[str, Any]], bool] | None = None
        #: a flow reached its verdict: move the parent task waiting for it
        self.ended: Callable[[Job], bool] | None = None
        #: a flow was canceled or timed out: cancel its children, move its parent task;
        #: the children canceled
        self.stopped: Callable[[Job], list[int]] | None = None


SUBFLOWS = SubflowHooks()


# -- dynamic maps -------------------------------------------------------------------------

def _item_row(job: Job, parent: Task, base: dict[str, Any], index: int,
              item: Any) -> dict[str, Any]:
    return {
        "job_id": job.job_id, "task_label": f"{parent.task_label}[{index}]",
        "task_cmd": parent.task_cmd, "task_params": dumps({**base, parent.task_map_as: item}),
        "task_provides": parent.task_provides, "task_retrymax": parent.task_retrymax,
        "task_retry_delay": parent.task_retry_delay,
        "task_retry_backoff": parent.task_retry_backoff, "task_timeout": parent.task_timeout,
        "task_parent": parent.task_id, "task_map_index": index, "u_ts": time.time(),
        # attempts count on from the map's expansion: items made again (rerun_task of the
        # map) may reuse a deleted item's row id, never its message ids
        "task_run": parent.task_run * RUNS_PER_EXPANSION,
    }


def expand(job: Job, task: Task, by_label: dict[str, Task]) -> bool:
    """A ready map task: look its list up, create one item task per element (in one
    transaction with its move to ``started``), then dispatch the first ``max_parallel``.
    Items that exist already (``retry_job`` of a failed map) are kept: only the ones
    reset to waiting run again. A missing or non-list ``map_over`` fails the task."""
    name = task.task_map_over or ""
    found, missing = _params_for(job, _with_requires(task, [name]), by_label)
    items = found.get(name)
    problem = (f"map_over name {name} not found in upstream results or job_extra"
               if missing else f"map_over {name} is a {type(items).__name__}, not a list"
               if not isinstance(items, list) else f"map_over {name} has {len(items)} "
               f"items, more than {MAX_MAP_ITEMS}" if len(items) > MAX_MAP_ITEMS else "")
    if problem:
        return store.move_task(task, "fail", job_started=True, ret_stat=ERR_MAP_OVER,
                               task_reason=f"task {task.task_label}: {problem}")
    assert isinstance(items, list)
    base, missing = _params_for(job, task, by_label)
    if missing:
        return store.move_task(task, "fail", job_started=True, ret_stat=ERR_TASK_PARAMS,
                               task_reason=f"task {task.task_label}: required names not "
                                           f"found: {', '.join(missing)}")
    source, source_run = task.task_status, task.task_run

    def step() -> bool:
        # a busy retry starts over from the row as read
        task.task_status, task.task_run = source, source_run
        with store.tx():
            if not store.move_task(task, "expand", job_started=True, task_reason=None,
                                   ret_stat=None, ret_data=None,
                                   task_run=task.task_run + 1):
                return False
            if not Task.select().where(Task.task_parent == task.task_id).exists():
                store.bulk_insert(Task, [_item_row(job, task, base, i, item)
                                         for i, item in enumerate(items)])
        return True

    try:
        if not store.busy_retry(step):
            return False
    except peewee.IntegrityError:  # another replica expanded it first
        task.task_status, task.task_run = source, source_run
        return False
    advance_map(job, task)
    return True


def _with_requires(task: Task, names: list[str]) -> Task:
    """A copy of ``task`` that looks up exactly ``names`` (no fixed params)."""
    probe = Task(**task.__data__)
    probe.task_params = None
    probe.task_requires = ",".join(names)
    return probe


def map_counts(parent_id: int) -> dict[str, int]:
    """A map task's items by state, one aggregate query."""
    rows: Any = (Task.select(Task.task_status, peewee.fn.COUNT(Task.task_id))
                 .where(Task.task_parent == parent_id).group_by(Task.task_status).tuples())
    return {str(status): int(n) for status, n in rows}


def advance_map(job: Job, parent: Task) -> bool:
    """Dispatch waiting items while fewer than ``max_parallel`` run; end the map task
    once every item ended: ``finished`` with ``results`` in item order when all
    finished, else ``failed`` (its ``results`` hold None for the failed items and
    ``failed`` their indices, so an ``all_done`` collect still gets them). True when the
    map task ended (its dependents may be ready)."""
    if parent.task_status != "started":
        return False
    counts: dict[str, Any] = map_counts(parent.task_id)
    if counts.get("waiting") and _free(parent, counts) > 0:
        # a slot is free: claim under the map's lock (counted again there)
        claimed, counts = _claim_items(job, parent)
        if claimed:
            _send_items(job, parent, claimed)
            return False
    if counts.get("waiting", 0) or any(counts.get(s, 0) for s in TASK_ACTIVE) \
            or counts.get("map", "started") != "started":
        return False
    rows = list(Task.select(Task.task_map_index, Task.task_status, Task.ret_data)
                .where(Task.task_parent == parent.task_id).order_by(Task.task_map_index))
    results = [dataflow.saved_data(loads(r.ret_data, {})) if r.task_status == "finished"
               else None for r in rows]
    failed = [r.task_map_index for r in rows if r.task_status != "finished"]
    stat = ERR_MAP_ITEM_FAILED if failed else retstat.OK
    data = {"stat": stat, "results": results, "count": len(rows), "failed": failed}
    cost = round(time.time() - (parent.u_ts or time.time()), 6)
    if failed:
        shown = ", ".join(str(i) for i in failed[:20]) + (" ..." if len(failed) > 20 else "")
        return store.move_task(parent, "fail", job_started=True, ret_stat=stat,
                               ret_data=dumps(data), task_cost=cost,
                               task_reason=f"task {parent.task_label}: {len(failed)} of "
                                           f"{len(rows)} items did not finish: {shown}")
    return store.move_task(parent, "succeed", job_started=True, ret_stat=stat,
                           ret_data=dumps(data), task_cost=cost, task_reason=None)


def _free(parent: Task, counts: dict[str, Any]) -> int:
    """Slots of the map's ``max_parallel`` not taken by an item with a message out."""
    return max(1, parent.task_max_parallel) - sum(counts.get(s, 0) for s in TASK_ACTIVE)


def _claim_items(job: Job, parent: Task) -> tuple[list[tuple[Task, int, str]], dict[str, Any]]:
    """One transaction holding the map task's row lock (so two notices never both fill
    the same free slots): count the items by state, then move the first waiting ones
    into the free slots (a CAS each: waiting -> pending, only while the flow runs)."""
    moved: list[tuple[Task, int, str]] = []
    running = Job.select(Job.job_id).where((Job.job_id == job.job_id)
                                           & (Job.job_status == "started"))

    def step() -> dict[str, Any]:
        moved.clear()
        now = time.time()
        with store.tx():
            row = store.locked(Task.select(Task.task_status)
                               .where(Task.task_id == parent.task_id)).first()
            if row is None or row.task_status != "started":
                return {"map": row.task_status if row else "missing"}
            counts: dict[str, Any] = map_counts(parent.task_id)
            free = _free(parent, counts)
            if not counts.get("waiting") or free <= 0:
                return counts
            batch = list(Task.select(*ITEM_COLUMNS).where((Task.task_parent == parent.task_id)
                                             & (Task.task_status == "waiting"))
                         .order_by(Task.task_map_index).limit(free))
            for start in range(0, len(batch), CLAIM_CHUNK):
                moved.extend(_claim_chunk(job, batch[start:start + CLAIM_CHUNK], running,
                                          now))
            return counts

    counts = store.busy_retry(step)
    return moved, counts


def _claim_chunk(job: Job, chunk: list[Task], running: Any,
                 now: float) -> list[tuple[Task, int, str]]:
    """waiting -> pending for a chunk of one map's items in ONE statement (each gets its
    attempt's message id through a CASE), only while the flow runs. The caller holds the
    map's lock, so only a cancel or a flow timeout can move an item meanwhile: when fewer
    rows moved than asked, the ones that did are read back by their new message ids."""
    claims = {item.task_id: (item, item.task_run + 1, msg_id_of(job, item, item.task_run + 1))
              for item in chunk}
    ids = list(claims)
    n = Task.update({Task.task_status: "pending", Task.task_run: Task.task_run + 1,
                     Task.task_reqid: peewee.Case(Task.task_id, [(i, c[2]) for i, c
                                                                 in claims.items()]),
                     Task.u_ts: now, Task.u_time: now_dt(),
                     Task.task_deadline: _deadline(chunk[0], 0.0)}).where(
        Task.task_id.in_(ids) & (Task.task_status == "waiting")
        & Task.job_id.in_(running)).execute()
    if n == len(ids):
        return list(claims.values())
    if not n:
        return []
    got = {t.task_id for t in Task.select(Task.task_id).where(
        Task.task_id.in_(ids) & Task.task_reqid.in_([c[2] for c in claims.values()])
        & (Task.task_status == "pending"))}
    return [c for i, c in claims.items() if i in got]


def _send_items(job: Job, parent: Task, moved: list[tuple[Task, int, str]]) -> None:
    """Publish the claimed items (each its attempt's id) in pipelined round trips, then one
    bulk pending -> started. A failed round trip leaves its items pending: the sweep
    publishes them again (idempotent by their ids)."""
    cfg = get_config(XingqiaoConfig)
    messages = []
    for item, run, msg_id in moved:
        item.task_status, item.task_run, item.task_reqid = "pending", run, msg_id
        messages.append({"topic": item.task_cmd, "data": loads(item.task_params, {}),
                         "msg_id": msg_id, "timeout": item.task_timeout or cfg.task_timeout})
    # one span for the map's dispatch; each message's send span is under it
    with tracing.span(f"map {parent.task_label}", {
            "butterfly.job_id": int(job.job_id), "butterfly.task_id": int(parent.task_id),
            "butterfly.task_cmd": parent.task_cmd, "butterfly.items": len(messages)},
            parent=job.job_trace):
        try:
            results = mq.publish_many(messages, max_retries=0, result_ttl=cfg.result_ttl,
                                      failure_ttl=cfg.result_ttl,
                                      reqid=job.job_reqid or None, force=True,
                                      notify=NOTICE_TOPIC)
        except RedisError as exc:
            log.warning("publishing %d items of flow %s failed (the sweep retries): %s",
                        len(messages), job.job_id, exc)
            return
    sent = [item.task_id for (item, _, _), result in zip(moved, results, strict=True)
            if result.status != NO_CONSUMER]  # one refused stays pending for the sweep
    if sent:
        store.busy_retry(Task.update({Task.task_status: "started", Task.u_ts: time.time()})
                         .where(Task.task_id.in_(sent) & (Task.task_status == "pending"))
                         .execute)


def after_end(task: Task, job: Job) -> None:
    """``task`` just ended: a map item advances its map (and, once the map ended, the
    flow); any other task advances the flow."""
    if not task.task_parent:
        advance(task.job_id, job)
        return
    parent = Task.get_or_none(Task.task_id == task.task_parent)
    if parent is not None and advance_map(job, parent):
        advance(task.job_id, job)


# -- outcomes -----------------------------------------------------------------------------

def _retry_delay(task: Task) -> float:
    cfg = get_config(XingqiaoConfig)
    base = task.task_retry_delay if task.task_retry_delay is not None else cfg.retry_delay
    if task.task_retry_backoff == "exponential":
        base *= 2 ** task.task_retrycount
    return min(base, cfg.max_retry_delay)


def _failed_attempt(job: Job, task: Task, msg_id: str, stat: str, reason: str,
                    result: dict | None, cost: float, final_event: str = "fail") -> bool:
    """Retry when the policy allows, else end the task (``fail`` or ``time_out``)."""
    common: dict[str, Any] = {
        "ret_stat": stat, "ret_data": dumps(result) if result is not None else None,
        "task_cost": cost, "task_reason": reason}
    if task.task_retrycount < task.task_retrymax:
        delay = _retry_delay(task)
        run = task.task_run + 1
        new_id = msg_id_of(job, task, run)
        if not store.move_task(task, "retry", msg_id=msg_id, job_started=True, task_run=run,
                               task_reqid=new_id, task_retrycount=task.task_retrycount + 1,
                               task_due=time.time() + delay,
                               task_deadline=_deadline(task, delay), **common):
            return False
        try:
            _publish(job, task, _current_params(job, task), delay)
        except RedisError as exc:
            log.warning("publishing retry %s failed (the sweep retries): %s", new_id, exc)
        return True
    return store.move_task(task, final_event, msg_id=msg_id, **common)


def apply_outcome(task: Task, msg: Message, job: Job | None = None) -> bool:
    """Move ``task`` by the recorded outcome of its current message; False when there is
    nothing to do (not ended yet, a stale attempt, or someone else already moved it)."""
    if task.task_status not in TASK_ACTIVE or msg.id != task.task_reqid \
            or msg.status not in (FINISHED, FAILED):
        return False
    job = job or Job.get_or_none(Job.job_id == task.job_id)
    if job is None or job.job_status != "started":
        return False
    result = msg.result if isinstance(msg.result, dict) else {}
    stat = str(result.get("stat", retstat.ERR_SERVER_EXCEPTION))
    if msg.status == FINISHED and stat == retstat.OK:
        missing = sorted(set(split_list(task.task_provides)) - set(result))
        if not missing:
            moved = store.move_task(task, "succeed", msg_id=msg.id, ret_stat=stat,
                                    ret_data=dumps(result), task_cost=msg.cost,
                                    task_reason=None)
        else:
            moved = _failed_attempt(job, task, msg.id, ERR_TASK_PROVIDES,
                                    f"task {task.task_label}: result lacks provides: "
                                    f"{', '.join(missing)}", result, msg.cost)
    elif msg.status == FAILED and msg.error_kind == ErrorKind.TIMEOUT:
        # the consumer interrupted the handler at the message's timeout: the same verdict
        # as the sweep's deadline, whichever of the two sees it first. The record's kind
        # says so, not the error's wording, which a handler's own error could imitate
        moved = _failed_attempt(job, task, msg.id, ERR_TASK_TIMEOUT,
                                f"task {task.task_label}: no result within "
                                f"{task.task_timeout or msg.timeout:g}s", result, msg.cost,
                                final_event="time_out")
    else:
        reason = (msg.error or f"handler answered {stat}").splitlines()[0][:500]
        moved = _failed_attempt(job, task, msg.id, stat, f"task {task.task_label}: {reason}",
                                result, msg.cost)
    if moved and task.task_status in TASK_DONE:
        after_end(task, job)
    return moved


def on_notice(msg_id: str, topic: str) -> str:
    """A completion notice: re-read the message (the notice is only a hint, so a forged
    or repeated one changes nothing) and advance its flow."""
    drop = get_config(XingqiaoConfig).drop_notices
    if drop and random.random() < drop:  # noqa: S311 - a test hook, not security
        return "dropped"
    found = _NOTICED.rows(str(msg_id))
    row = found[0] if found else None
    if row is None or row.task_cmd != topic:
        return "unknown"
    msg = mq.broker().get(msg_id, topic)
    if msg is None:
        return "missing"
    return "applied" if apply_outcome(row, msg, row.flow) else "ignored"


def timed_out(task: Task, msg: Message | None) -> bool:
    """The current attempt ran past its deadline: fence its message, retry or end it."""
    job = Job.get_or_none(Job.job_id == task.job_id)
    if job is None or job.job_status != "started":
        return False
    mq.broker().delete(task.task_cmd, task.task_reqid)
    moved = _failed_attempt(job, task, task.task_reqid, ERR_TASK_TIMEOUT,
                            f"task {task.task_label}: no result within "
                            f"{task.task_timeout:g}s", msg.result if msg else None,
                            msg.cost if msg else 0.0, final_event="time_out")
    if moved and task.task_status in TASK_DONE:
        after_end(task, job)
    return moved


def republish(task: Task) -> bool:
    """Publish the current attempt again (its message never made it to the queue)."""
    job = Job.get_or_none(Job.job_id == task.job_id)
    if job is None or job.job_status != "started":
        return False
    delay = max(0.0, (task.task_due or 0.0) - time.time())
    _publish(job, task, _current_params(job, task), delay)
    if task.task_status == "pending":
        store.move_task(task, "sent", msg_id=task.task_reqid)
    return True
