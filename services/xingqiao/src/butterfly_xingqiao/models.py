"""Xingqiao's tables: flows ("jobs", the original's ``workflow_job``), their tasks
(``workflow_task``) and declarative flow types (``workflow_flow_type``).

Column names follow the original so its admin pages and SQL keep working; the columns it
stored but never used (``task_retrymax``, ``task_timeout``) now drive the engine, and the
new ones carry the engine's bookkeeping: ``task_run`` (which attempt's message is current:
the message id is derived from it, so re-publishing an attempt is idempotent),
``task_deadline`` / ``task_due`` (epoch seconds the sweep compares) and ``u_ts`` (when the
task last moved, so the sweep leaves fresh tasks to their notices).
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import peewee

from butterfly_common import db


def now_dt() -> dt.datetime:
    return dt.datetime.now().replace(microsecond=0)


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def loads(text: str | None, default: Any = None) -> Any:
    if not text:
        return default
    try:
        return json.loads(text)
    except ValueError:
        return default


def split_list(text: str | None) -> list[str]:
    """The original stored label/name lists comma-separated; so do we."""
    return [part for part in (text or "").split(",") if part]


class BaseModel(peewee.Model):
    class Meta:
        database = db.database
        legacy_table_names = False


class Job(BaseModel):
    """One flow run. ``job_status``: started | finished | failed | canceled | timed_out."""

    job_id = peewee.BigAutoField()
    job_namespace = peewee.CharField(max_length=64, index=True)
    job_reqid = peewee.CharField(max_length=32, default="")
    job_name = peewee.CharField(max_length=64, unique=True)
    job_status = peewee.CharField(max_length=16, default="started", index=True)
    job_type = peewee.CharField(max_length=64)
    #: 0 for a plugin type, else the version of the JSON flow type it was built from.
    job_type_version = peewee.IntegerField(default=0)
    #: The definition this run was built from and keeps: a JSON type's version number
    #: ("3"), a plugin's content hash (16 hex of the sha256 of its file).
    job_version = peewee.CharField(max_length=64, default="")
    #: The W3C traceparent of the flow's span (tracing on): its tasks are its children.
    job_trace = peewee.CharField(max_length=64, default="")
    ret_stat = peewee.CharField(max_length=64, default="OK")
    ret_data = peewee.TextField(null=True)
    job_cost = peewee.DoubleField(default=0.0)
    job_extra = peewee.TextField(null=True)
    job_timeout = peewee.IntegerField(default=3600)
    #: Run counter: 1 at create, +1 per retry_job / rerun_task (the original's pass id).
    exe_id = peewee.IntegerField(default=1)
    #: Random salt of this flow's message ids (a wiped DB never reuses a live id).
    job_token = peewee.CharField(max_length=16, default="")
    operator = peewee.CharField(max_length=128, default="-")
    job_client = peewee.CharField(max_length=64, default="")
    is_valid = peewee.BooleanField(default=False)
    c_time = peewee.DateTimeField(default=now_dt, index=True)
    s_time = peewee.DateTimeField(default=now_dt)
    e_time = peewee.DateTimeField(null=True)
    #: Epoch seconds the current run started (job_timeout counts from here).
    s_ts = peewee.DoubleField(default=0.0)
    #: A sub-flow: the flow and the task (its ``subflow`` step) that created it; 0: none.
    #: Its end moves that task (``subflows.child_ended``).
    job_parent_id = peewee.BigIntegerField(default=0, index=True)
    job_parent_task = peewee.BigIntegerField(default=0)
    #: Saga: the flow type's on_failure tasks (a JSON list of their specs), run once the
    #: flow failed, after the undos (``saga.py``).
    job_on_failure = peewee.TextField(null=True)

    class Meta:
        table_name = "workflow_job"


class Task(BaseModel):
    """One task of a flow: a call of ``task_cmd`` (a topic) with resolved params."""

    task_id = peewee.BigAutoField()
    job_id = peewee.BigIntegerField(index=True)
    task_label = peewee.CharField(max_length=64)
    #: Message id of the current attempt ("" before the first dispatch).
    task_reqid = peewee.CharField(max_length=200, default="", index=True)
    task_cmd = peewee.CharField(max_length=128)
    task_params = peewee.TextField(null=True)
    task_requires = peewee.TextField(default="")
    task_provides = peewee.TextField(default="")
    task_dependencies = peewee.TextField(default="")
    task_status = peewee.CharField(max_length=16, default="waiting", index=True)
    task_cost = peewee.DoubleField(default=0.0)
    task_extra = peewee.TextField(null=True)
    task_is_save = peewee.BooleanField(default=False)
    ret_stat = peewee.CharField(max_length=64, null=True)
    ret_data = peewee.TextField(null=True)
    task_retrymax = peewee.IntegerField(default=0)
    task_retrycount = peewee.IntegerField(default=0)
    task_retry_delay = peewee.DoubleField(null=True)
    task_retry_backoff = peewee.CharField(max_length=16, default="fixed")
    task_timeout = peewee.DoubleField(null=True)
    task_trigger_rule = peewee.CharField(max_length=16, default="all_success")
    task_run = peewee.IntegerField(default=0)
    task_reason = peewee.TextField(null=True)
    task_deadline = peewee.DoubleField(null=True)
    task_due = peewee.DoubleField(null=True)
    c_time = peewee.DateTimeField(default=now_dt)
    u_time = peewee.DateTimeField(default=now_dt)
    u_ts = peewee.DoubleField(default=0.0)
    #: A map task: the name of its list, its parallelism and the items' param name.
    task_map_over = peewee.CharField(max_length=64, null=True)
    task_max_parallel = peewee.IntegerField(default=0)
    task_map_as = peewee.CharField(max_length=64, default="item")
    #: A map item: its map task's id (0: not an item) and its index in the list.
    task_parent = peewee.BigIntegerField(default=0)
    task_map_index = peewee.IntegerField(null=True)
    #: A signal task: the signal's name, its timeout policy and default result.
    task_signal = peewee.CharField(max_length=64, null=True)
    task_on_timeout = peewee.CharField(max_length=16, default="fail")
    task_default = peewee.TextField(null=True)
    #: An approval task's question (a signal task a person answers in the console).
    task_approval = peewee.CharField(max_length=255, null=True)
    #: A sub-flow task: the flow type (and pinned version) of the child it creates, and
    #: the child's job_id once created (0: none yet; kept apart from ``task_reqid``, which
    #: names a queue message).
    task_subflow = peewee.CharField(max_length=64, null=True)
    task_subflow_version = peewee.CharField(max_length=64, null=True)
    task_child = peewee.BigIntegerField(default=0)
    #: Saga: how to undo this step (JSON ``{cmd, params, retrymax, timeout}``).
    task_undo = peewee.TextField(null=True)
    #: Saga: a compensation task's kind (``undo`` / ``on_failure``; null: a step of the
    #: flow) and, for an undo, the label of the step it undoes.
    task_saga = peewee.CharField(max_length=16, null=True)
    task_undoes = peewee.CharField(max_length=64, null=True)

    class Meta:
        table_name = "workflow_task"
        #: (task_parent, task_status): a map counts its items by state from the index
        indexes = ((("job_id", "task_label"), True), (("task_parent", "task_status"), False))


class FlowType(BaseModel):
    """One version of a declarative (JSON) flow type; create_job uses the newest."""

    id = peewee.BigAutoField()
    name = peewee.CharField(max_length=64)
    version = peewee.IntegerField()
    description = peewee.CharField(max_length=255, default="")
    definition = peewee.TextField()
    operator = peewee.CharField(max_length=128, default="-")
    c_time = peewee.DateTimeField(default=now_dt)

    class Meta:
        table_name = "workflow_flow_type"
        indexes = ((("name", "version"), True),)


class Signal(BaseModel):
    """A signal sent to a flow: kept until a signal task of its name takes it (oldest
    first), then ``task_id`` says which (0: not taken yet)."""

    id = peewee.BigAutoField()
    job_id = peewee.BigIntegerField()
    name = peewee.CharField(max_length=64)
    payload = peewee.TextField(null=True)
    task_id = peewee.BigIntegerField(default=0)
    operator = peewee.CharField(max_length=128, default="-")
    c_time = peewee.DateTimeField(default=now_dt)
    d_time = peewee.DateTimeField(null=True)

    class Meta:
        table_name = "workflow_signal"
        indexes = ((("job_id", "name", "task_id"), False),)


class Trigger(BaseModel):
    """An event trigger: each event published for it (``/xingqiao/trigger``, ``trigger:
    name``) starts one flow of ``job_type`` with the event as its ``job_extra``; the
    flow's unique ``job_name`` is derived from the trigger and the event id, so the same
    event twice (republished, or redelivered by the at-least-once queue) starts one."""

    id = peewee.BigAutoField()
    name = peewee.CharField(max_length=64, unique=True)
    job_type = peewee.CharField(max_length=64)
    #: A pinned definition (as create_job's ``job_version``); "" runs the newest.
    job_version = peewee.CharField(max_length=64, default="")
    job_namespace = peewee.CharField(max_length=64)
    description = peewee.CharField(max_length=255, default="")
    enabled = peewee.BooleanField(default=True)
    #: Flows started by its events, and events dropped while it was disabled.
    fired = peewee.BigIntegerField(default=0)
    dropped = peewee.BigIntegerField(default=0)
    created_by = peewee.CharField(max_length=128, default="-")
    updated_by = peewee.CharField(max_length=128, default="-")
    c_time = peewee.DateTimeField(default=now_dt)
    u_time = peewee.DateTimeField(default=now_dt)

    class Meta:
        table_name = "workflow_trigger"


MODELS = [Job, Task, FlowType, Signal, Trigger]
