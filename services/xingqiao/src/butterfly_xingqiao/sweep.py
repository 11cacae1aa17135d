"""The sweep: what notices cannot do - lost notices, task and flow timeouts, stuck steps.

Every process follows plugin reloads; only the holder of the ``xq:sweep`` lease sweeps
(``Periodic`` with a lease), so the work is done once however many replicas run. One pass,
every ``XINGQIAO_SWEEP_INTERVAL``:

1. flows past their ``job_timeout`` end ``timed_out`` (their messages deleted = fenced);
2. each task with a message out (pending / started / retrying) that has not moved for
   ``XINGQIAO_NOTICE_GRACE`` has its message read: ended -> applied exactly as its notice
   would have been; missing -> published again (same id: idempotent); past its deadline ->
   the attempt timed out (retry or ``timed_out``);
3. signal tasks past their timeout get their ``on_timeout`` policy (and kept signals a
   crashed sender did not deliver are delivered);
4. started sub-flow tasks whose child flow already ended are moved (the child's end
   notification was lost to a crash);
5. flows with no message out are advanced (a step that crashed between a task's end and
   dispatching its dependents, or between the last task and the verdict).

So a flow whose notices are all lost still ends within one interval (+ grace) of each
task's own time.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

from redis.exceptions import RedisError

from butterfly_common import db, mq
from butterfly_common.coordination import Lease
from butterfly_common.mq.keys import FIELDS
from butterfly_common.mq.message import FAILED, FINISHED, Message
from butterfly_common.periodic import Periodic

from . import engine, flowtypes, signals, store, subflows
from .config import XingqiaoConfig
from .lifecycle import TASK_ACTIVE
from .models import Job, Task, now_dt

log = logging.getLogger("butterfly.xingqiao")
LEASE_KEY = "xq:sweep"


def _messages(tasks: list[Task]) -> list[Message | None]:
    """The current message of each task, one pipelined round trip."""
    broker = mq.broker()
    pipe = broker.client.pipeline(transaction=False)
    for t in tasks:
        pipe.hmget(broker.keys(t.task_cmd).msg(t.task_reqid), list(FIELDS))
    return [Message.from_values(v) if v and v[0] else None for v in pipe.execute()]


def expire_flows(now: float) -> int:
    n = 0
    # materialized first: writing while a SELECT cursor is still open on this connection
    # would keep an old read snapshot, and SQLite refuses that upgrade (busy) for good
    for job in list(Job.select().where(Job.job_status == "started")):
        if now <= job.s_ts + job.job_timeout:
            continue
        if not store.move_job(job, "time_out", ret_stat=engine.ERR_JOB_EXE_TIMEOUT,
                              e_time=now_dt(), job_cost=round(now - job.s_ts, 6)):
            continue
        n += 1
        for task in engine.tasks_of(job.job_id):
            if task.task_status in TASK_ACTIVE:
                if task.task_reqid:  # a map task has no message of its own
                    with contextlib.suppress(RedisError):
                        mq.broker().delete(task.task_cmd, task.task_reqid)
                store.end_task(task, "time_out", ret_stat=engine.ERR_JOB_EXE_TIMEOUT,
                               task_reason="the flow timed out")
            elif task.task_status == "waiting":
                store.end_task(task, "cancel", task_reason="the flow timed out")
        subflows.stopped(job)  # its children go too; a sub-flow's parent task times out
    return n


def check_tasks(now: float, grace: float) -> int:
    stale = list(Task.select().where(Task.task_status.in_(TASK_ACTIVE)
                                     & (Task.u_ts < now - grace)).limit(5000))
    stale = [t for t in stale if t.task_reqid]
    handled = 0
    for task, msg in zip(stale, _messages(stale), strict=True):
        try:
            if msg is not None and msg.status in (FINISHED, FAILED):
                handled += engine.apply_outcome(task, msg)
            elif task.task_deadline and now > task.task_deadline:
                handled += engine.timed_out(task, msg)
            elif msg is None:
                handled += engine.republish(task)
            elif task.task_status == "pending":
                handled += store.move_task(task, "sent", msg_id=task.task_reqid)
        except RedisError as exc:
            log.warning("sweep: task %s: %s", task.task_id, exc)
    return handled


def advance_idle_flows() -> int:
    # flows with a message out are advanced by its notice; a map task (no message of
    # its own) in started does not hold its flow: the advance ends it once its items did
    active = {t.job_id for t in Task.select(Task.job_id).where(
        Task.task_status.in_(TASK_ACTIVE) & (Task.task_reqid != ""))}
    n = 0
    for job in list(Job.select(Job.job_id).where((Job.job_status == "started")
                                                 & (Job.is_valid == True))):  # noqa: E712
        if job.job_id not in active:
            engine.advance(job.job_id)
            n += 1
    return n


def sweep_once(config: XingqiaoConfig) -> dict[str, int]:
    """One pass of every step (also callable from tests)."""
    now = time.time()
    with db.database.connection_context():
        expired = expire_flows(now)
        moved = signals.sweep(now)
        for job_id in moved:
            engine.advance(job_id)
        return {"timed_out_flows": expired, "tasks": check_tasks(now, config.notice_grace),
                "signals": len(moved), "subflows": len(subflows.sweep()),
                "advanced": advance_idle_flows()}


class Sweeper:
    """The loops of one process: follow plugin reloads (every process, ``xq-follow``) and
    sweep (``xq-sweep``: only the holder of the ``xq:sweep`` lease, whose TTL outlasts
    three intervals, so a dead holder's successor takes over within that)."""

    def __init__(self, client: Any, config: XingqiaoConfig) -> None:
        self.config = config
        self.client = client
        interval = config.sweep_interval
        self.follower = Periodic("xq-follow", interval, self.follow, logger=log)
        self.sweeper = Periodic("xq-sweep", interval, self.sweep_pass, logger=log,
                                lease=Lease(client, LEASE_KEY, max(3 * interval, 5.0))
                                ) if config.sweep else None

    def start(self) -> Sweeper:
        self.follower.start()
        if self.sweeper is not None:
            self.sweeper.start()
        return self

    def stop(self) -> None:
        """Stop both loops (the sweep's lease is released for the next holder)."""
        if self.sweeper is not None:
            self.sweeper.stop(10)
        self.follower.stop(10)

    def follow(self) -> None:
        flowtypes.follow(self.client)

    def sweep_pass(self) -> None:
        flowtypes.follow(self.client)  # sweep with the plugins of the latest reload
        done = sweep_once(self.config)
        if any(done.values()):
            log.info("sweep: %s", done)
