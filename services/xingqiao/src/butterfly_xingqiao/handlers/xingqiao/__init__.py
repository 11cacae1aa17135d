"""``/xingqiao/*``: flows (the original's "jobs") of handler calls, their tasks and types.

Thin handlers over ``operations`` / ``queries`` / ``flowtypes`` / ``graph``. Names and
parameters are the original's (``create_job``, ``list_jobs``, ``get_job_detail``,
``get_tasklist_by_jobid``, ``retry_job``, ``delete_job``, ``get_graph``) plus the original
admin UI's (``list_tasks``, ``get_task``) and the new operations. Writes need
authorization (``@api(write=True)``); refusals answer a stable stat, the reason in
``x-reason`` and the HTTP code of ``operations.HTTP_CODES``. Only ``task_notice`` (the
completion notices of task messages) and ``trigger`` (events of event triggers) are queue
topics.
"""

from __future__ import annotations

import json
from typing import Any

from butterfly_common import Refusal, api, mq, raw, retstat
from butterfly_common.params import ParamError
from butterfly_common.request import Request
from butterfly_common.roles import identity_of
from butterfly_common.runtime import get_config
from butterfly_xingqiao import (
    engine,
    flowtypes,
    graph,
    operations,
    queries,
    saga,
    signals,
    subflows,
    triggers,
)
from butterfly_xingqiao.config import XingqiaoConfig
from butterfly_xingqiao.definitions import DefinitionError, unserved_warnings
from butterfly_xingqiao.models import FlowType, loads

OK = retstat.OK
@api(write=True)
def create_job(req: Request, job_namespace: str, job_type: str, job_name: str | None = None,
               job_extra: Any = None, job_timeout: int | None = None,
               job_version: str | None = None) -> Any:
    """Start a flow of ``job_type`` (a plugin or a JSON flow type). ``job_extra``: a JSON
    object (or a string of one) the tasks' ``requires`` draw from. ``job_name`` is unique
    (default: the request id). ``job_version`` pins the definition: a JSON type's version
    number (default the newest), or a plugin's content hash (only the loaded one runs).
    The flow records its version (``job_version``) and keeps it. Answers
    ``data.job_id``. ERR_JOB_EXIST, ERR_JOB_TYPE_NOT_EXISTS, ERR_JOB_VERSION_NOT_EXIST,
    ERR_JOB_EXTRA_INVALID, ERR_JOB_CREATE_FAILED."""
    if job_version is not None and not 0 < len(job_version) <= 64:
        raise ParamError("invalid: job_version (1..64 chars)")
    if job_timeout is not None and job_timeout <= 0:
        raise ParamError("invalid: job_timeout (seconds > 0)")
    if not 0 < len(job_namespace) <= 64 or (job_name is not None
                                             and not 0 < len(job_name) <= 64):
        raise ParamError("invalid: job_namespace / job_name (1..64 chars)")
    job_id = operations.create_job(job_namespace=job_namespace, job_type=job_type,
                                   job_name=job_name, job_extra=job_extra,
                                   job_timeout=job_timeout, reqid=req.reqid,
                                   operator=req.username, client=req.ip,
                                   job_version=job_version)
    return OK, {"data": {"job_id": job_id}}


@api(topic=False)
def list_jobs(req: Request, job_namespace: str | None = None, job_id: int | None = None,
              job_reqid: str | None = None, job_name: str | None = None,
              job_status: str | None = None, job_type: str | None = None,
              ret_stat: str | None = None, operator: str | None = None,
              job_client: str | None = None, orderBy: str | None = None,
              orderDir: str | None = None, page_index: int = 1,
              page_size: int = 10) -> Any:
    """Flows, newest first, as ``data: {total, list}``; every filter optional (``job_name``
    is SQL LIKE as given). ``orderBy`` one of the listed columns, ``orderDir`` asc|desc."""
    filters = {"job_namespace": job_namespace, "job_id": job_id, "job_reqid": job_reqid,
               "job_name": job_name, "job_status": job_status, "job_type": job_type,
               "ret_stat": ret_stat, "operator": operator, "job_client": job_client}
    return OK, {"data": queries.list_jobs(filters, orderBy, orderDir, page_index, page_size)}


@api(topic=False)
def get_job_detail(req: Request, job_id: int) -> Any:
    """Every column of one flow (``ret_data`` and ``job_extra`` parsed), its
    ``task_status`` counts and ``job_lock`` (the original admin page's flag: true while
    an attempt of the flow is out on the queue, see ``queries.job_lock``), and ``maps``:
    each map task's items by state (``{label: {total, finished, failed, ...}}``);
    ``parent`` (a sub-flow: ``{job_id, task_id, task_label}`` of the task that created
    it, else null) and ``subflows`` (each sub-flow task's ``child_job_id``); and
    ``compensation``: the saga tasks a failure created, in run order (``[{task_id, label,
    kind, undoes, status, ret_stat, reason}]``, empty when none). ERR_JOB_NOT_EXIST."""
    job = operations.get_job(job_id)
    data = queries.job_row(job, full=True)
    data["task_status"] = counts = queries.status_counts(job_id)
    data["job_lock"] = queries.job_lock(job, counts)
    data["maps"] = queries.map_progress(job_id)
    data.update(subflows.links(job))
    data["job_on_failure"] = loads(job.job_on_failure, [])
    data["compensation"] = saga.record(job_id)
    return OK, {"data": data}


@api(topic=False)
def get_tasklist_by_jobid(req: Request, job_id: int) -> Any:
    """All tasks of a flow (every column) as ``data: {total, list}``. ERR_JOB_NOT_EXIST."""
    return OK, {"data": queries.list_tasks(job_id)}


@api(topic=False)
def list_tasks(req: Request, job_id: int, orderBy: str | None = None,
               orderDir: str | None = None, page_index: int = 1,
               page_size: int = 100) -> Any:
    """The admin UI's name for a flow's tasks, with paging and ``orderBy``/``orderDir``."""
    return OK, {"data": queries.list_tasks(job_id, orderBy, orderDir, page_index,
                                           page_size)}


@api(topic=False)
def get_task(req: Request, task_id: int) -> Any:
    """One task, every column. ERR_TASK_NOT_EXIST."""
    return OK, {"data": queries.task_row(operations.get_task(task_id))}


@api(write=True)
def retry_job(req: Request, job_id: int) -> Any:
    """Rerun a failed / timed-out / canceled flow from where it failed: those tasks and
    their downstream go back to waiting, finished tasks keep their results.
    ERR_JOB_STATUS_NOT_FAILED, ERR_JOB_NOT_EXIST."""
    return OK, {"data": operations.retry_job(job_id)}


@api(write=True)
def rerun_task(req: Request, task_id: int, params: dict | None = None) -> Any:
    """Run one task and its downstream again (``params``: new fixed params for it); the
    flow restarts if it had ended; a map task makes its items again. ERR_TASK_RUNNING,
    ERR_TASK_NOT_EXIST, ERR_TASK_IS_MAP_ITEM (rerun its map task instead)."""
    return OK, {"data": operations.rerun_task(task_id, params)}


@api(write=True)
def cancel_job(req: Request, job_id: int) -> Any:
    """Stop a running flow: no more dispatch, queued messages deleted, running ones
    fenced (their results are ignored). ERR_JOB_NOT_RUNNING."""
    return OK, {"data": operations.cancel_job(job_id)}


@api(write=True, role="admin")
def delete_job(req: Request, job_id: int) -> Any:
    """Delete a flow and its tasks; refused while it runs (ERR_JOB_RUNNING: cancel it
    first)."""
    return OK, {"data": operations.delete_job(job_id)}


@api(write=True)
def send_signal(req: Request, job_id: int, name: str, payload: dict | None = None) -> Any:
    """Send signal ``name`` to a running flow: its signal task of that name finishes with
    ``payload`` (a JSON object) as its result, and the flow moves on. Sent before the task
    is reached, the signal is kept until then (``kept: true``). Answers ``data: {job_id,
    signal_id, name, delivered_to, kept}``. ERR_JOB_NOT_EXIST, ERR_JOB_NOT_RUNNING,
    ERR_SIGNAL_UNKNOWN (no signal task of that name), ERR_SIGNAL_PAYLOAD_INVALID (the
    payload lacks a key the task ``provides``)."""
    if not 0 < len(name) <= 64 or not name.isprintable():
        raise ParamError("invalid: name (1..64 printable chars)")
    return OK, {"data": operations.send_signal(job_id, name, payload, req.username)}


@api(topic=False)
def list_signals(req: Request, job_id: int) -> Any:
    """A flow's signals, oldest first, as ``data: {total, list}``: each with its
    ``payload``, who sent it, and the task that took it (``task_id`` / ``task_label``,
    null while kept). ERR_JOB_NOT_EXIST."""
    operations.get_job(job_id)
    items = signals.list_for(job_id)
    return OK, {"data": {"total": len(items), "list": items}}


@api(topic=False)
def list_approvals(req: Request, page_index: int = 1, page_size: int = 50) -> Any:
    """Approval tasks waiting for a person in running flows, oldest first, as
    ``data: {total, list}``: each with its flow, ``approval`` (the question), ``signal``
    (send it with ``{"approved", "comment"}`` to decide) and ``deadline``."""
    if page_index < 1 or not 1 <= page_size <= 1000:
        raise ParamError("invalid: page_index >= 1 and page_size 1..1000")
    return OK, {"data": signals.waiting_approvals(page_index, page_size)}


def _graph_of(job_id: int) -> str:
    job = operations.get_job(job_id)
    return graph.to_dot(job, engine.tasks_of(job_id))


@raw
def get_graph(req: Request, job_id: int, format: str = "svg") -> Any:
    """The flow drawn by Graphviz: SVG (default) or PNG (``format=png``), nodes coloured by
    state with task id, stat and cost."""
    if format not in graph.FORMATS:
        raise ParamError("invalid: format (svg or png)")
    try:
        body = graph.render(_graph_of(job_id), format, get_config(XingqiaoConfig).graph_timeout)
    except graph.GraphError as exc:
        raise Refusal("ERR_GRAPH_FAILED", str(exc), http=503) from None
    return 200, body, [("Content-Type", graph.FORMATS[format]),
                       ("Content-Disposition", f'inline; filename="flow-{job_id}.{format}"')]


@raw
def get_dot(req: Request, job_id: int) -> Any:
    """The flow's graph as DOT text (``text/vnd.graphviz``)."""
    return 200, _graph_of(job_id), [("Content-Type", "text/vnd.graphviz; charset=utf-8")]


@api(write=True)
def flow_type_create(req: Request, name: str, tasks: Any, description: str = "",
                     extra_required: list[str] | None = None,
                     on_failure: list[Any] | None = None) -> Any:
    """Store a new version of a declarative flow type: ``tasks`` is a list of objects with
    label, cmd, params, requires, provides, dependencies, retrymax, retry_delay,
    retry_backoff, timeout, trigger_rule, is_save, extra, map_over, max_parallel, map_as,
    or for a signal task (no cmd) signal, timeout, on_timeout, default, approval (a
    question: a person answers it in the console); a step may carry ``undo: {cmd, params,
    retrymax, timeout}`` and ``on_failure`` lists tasks ``{label, cmd, params, retrymax,
    timeout}`` run once when a flow fails (a saga: see the docs). Validated now
    (ERR_FLOW_TYPE_INVALID naming each bad task in ``errors``); topics no consumer ever
    served come back as ``warnings``. Answers ``data: {name, version, warnings}``."""
    if not 0 < len(name) <= flowtypes.NAME_MAX:
        raise ParamError(f"invalid: name (1..{flowtypes.NAME_MAX} chars)")
    if name in flowtypes.plugins().types:
        raise Refusal("ERR_FLOW_TYPE_IS_PLUGIN", f"{name} is a plugin flow type")
    if isinstance(tasks, str):
        try:
            tasks = json.loads(tasks)
        except ValueError as exc:
            raise ParamError(f"invalid: tasks (not JSON: {exc})") from None
    if on_failure and isinstance(tasks, list):
        tasks = [*tasks, *({**t, "on_failure": True} if isinstance(t, dict) else t
                           for t in on_failure)]
    try:
        specs = flowtypes.json_specs(tasks)
    except DefinitionError as exc:
        raise Refusal("ERR_FLOW_TYPE_INVALID", str(exc), {"errors": exc.errors}) from None
    row = flowtypes.save_json_type(name, specs, description[:255], req.username,
                                   list(extra_required or []))
    warnings = unserved_warnings(specs, set(mq.broker().topics()))
    return OK, {"data": {"name": name, "version": row.version, "warnings": warnings}}


@api(topic=False)
def flow_type_list(req: Request) -> Any:
    """Every flow type: plugins (``kind: plugin``, ``hash``: the content hash new flows
    record as their version) and the newest version of each JSON type, as
    ``data: {total, list}``; ``errors`` lists plugin files that failed to load."""
    loaded = flowtypes.plugins()
    items = [{"name": n, "kind": "plugin", "origin": loaded.origins[n], "version": 0,
              "hash": loaded.hashes.get(n, "")} for n in sorted(loaded.types)]
    newest: dict[str, FlowType] = {}
    for row in FlowType.select().order_by(FlowType.name, FlowType.version):
        newest[row.name] = row
    items += [{"name": r.name, "kind": "json", "version": r.version,
               "description": r.description, "c_time": r.c_time} for r in newest.values()]
    return OK, {"data": {"total": len(items), "list": items, "errors": loaded.errors}}


@api(topic=False)
def flow_type_get(req: Request, name: str, version: int | None = None) -> Any:
    """One JSON flow type's definition (newest version unless ``version``)."""
    query = FlowType.select().where(FlowType.name == name)
    query = query.where(FlowType.version == version) if version else \
        query.order_by(FlowType.version.desc())
    row = query.first()
    if row is None:
        raise Refusal("ERR_FLOW_TYPE_NOT_EXIST", f"no JSON flow type {name!r}"
                      + (f" version {version}" if version else ""))
    return OK, {"data": {"name": row.name, "version": row.version,
                         "description": row.description, "operator": row.operator,
                         "c_time": row.c_time, **loads(row.definition, {})}}


@api(write=True)
def reload_plugins(req: Request) -> Any:
    """Import XINGQIAO_PLUGIN_DIR again, here now and in every other process within one
    sweep interval. Answers the loaded ``types``, their content ``hashes`` (the version
    new flows record) and the files that failed (``errors``). Flows that exist keep the
    tasks (and version) they were created with."""
    loaded = flowtypes.reload_everywhere(mq.broker().client)
    return OK, {"data": {"types": sorted(loaded.types), "errors": loaded.errors,
                         "version": loaded.version, "hashes": loaded.hashes}}


@api
def task_notice(req: Request, msg_id: str, topic: str, status: str = "", stat: str = "",
                cost: float = 0.0) -> Any:
    """Queue only: the completion notice of a task message (``publish(notify=...)``). The
    message's recorded outcome is read again, so a repeated notice changes nothing."""
    if req.method != "QUEUE":
        raise Refusal("ERR_NOT_FROM_QUEUE", "task_notice is served from the queue only")
    return OK, {"applied": engine.on_notice(msg_id, topic)}


def _who(req: Request) -> str:
    """The caller as audited: the user, else how it authenticated (``admin-token``)."""
    caller = identity_of(req)
    return caller.username if caller.username != "-" else caller.via


def _trigger_name(name: str) -> None:
    if not triggers.valid_name(name):
        raise ParamError("invalid: name (1..64 of letters, digits, _ . -; starting with a "
                         "letter or digit)")


@api(write=True)
def trigger_create(req: Request, name: str, job_type: str, job_namespace: str = "trigger",
                   job_version: str | None = None, description: str = "",
                   enabled: bool = True) -> Any:
    """Bind events to a flow type: each event published to ``/xingqiao/trigger`` with
    ``trigger: name`` starts one flow of ``job_type`` (``job_version`` pins a definition,
    as in create_job) in ``job_namespace``, the event as its ``job_extra``. Answers the
    trigger as ``data``. ERR_TRIGGER_EXIST, ERR_JOB_TYPE_NOT_EXISTS,
    ERR_JOB_VERSION_NOT_EXIST."""
    _trigger_name(name)
    if not 0 < len(job_type) <= flowtypes.NAME_MAX or not 0 < len(job_namespace) <= 64:
        raise ParamError("invalid: job_type / job_namespace (1..64 chars)")
    if job_version is not None and not 0 < len(job_version) <= 64:
        raise ParamError("invalid: job_version (1..64 chars)")
    return OK, {"data": triggers.create(name, job_type, job_namespace, job_version,
                                        description[:255], enabled, _who(req))}


@api(write=True)
def trigger_enable(req: Request, name: str) -> Any:
    """Start flows for the trigger's events again. ERR_TRIGGER_NOT_EXIST."""
    _trigger_name(name)
    return OK, {"data": triggers.set_enabled(name, True, _who(req))}


@api(write=True)
def trigger_disable(req: Request, name: str) -> Any:
    """Stop starting flows: events that come while disabled are dropped (answered
    ERR_TRIGGER_DISABLED, counted in ``dropped``), not kept. ERR_TRIGGER_NOT_EXIST."""
    _trigger_name(name)
    return OK, {"data": triggers.set_enabled(name, False, _who(req))}


@api(write=True, role="admin")
def trigger_delete(req: Request, name: str) -> Any:
    """Delete a trigger (its flows stay); later events answer ERR_TRIGGER_NOT_EXIST."""
    _trigger_name(name)
    return OK, {"data": triggers.delete(name, _who(req))}


@api(topic=False)
def trigger_list(req: Request) -> Any:
    """Every trigger by name as ``data: {total, list}``: its flow type, namespace,
    ``enabled``, ``fired`` (flows started), ``dropped`` (events while disabled) and who
    created / last changed it when."""
    items = triggers.listing()
    return OK, {"data": {"total": len(items), "list": items}}


@api
def trigger(req: Request, trigger: str, event: Any = None, event_id: str | None = None) -> Any:
    """Queue only (publish to ``/xingqiao/trigger``): an event of trigger ``trigger``. It
    starts one flow with ``event`` (a JSON object) as its ``job_extra``; ``event_id``
    (default: the message id) deduplicates: the same id again answers the same flow
    (``created: false``). Answers ``data: {trigger, event_id, job_id, created}``.
    ERR_TRIGGER_NOT_EXIST, ERR_TRIGGER_DISABLED (the event is dropped), and create_job's
    refusals."""
    if req.method != "QUEUE":
        raise Refusal("ERR_NOT_FROM_QUEUE", "trigger is served from the queue only: "
                      f"publish to {triggers.TOPIC}")
    _trigger_name(trigger)
    if event_id is None:
        event_id = str(req.context.get(triggers.MSG_ID) or req.reqid)
    if not 0 < len(event_id) <= triggers.EVENT_ID_MAX or not event_id.isprintable():
        raise ParamError(f"invalid: event_id (1..{triggers.EVENT_ID_MAX} printable chars)")
    return OK, {"data": triggers.fire(trigger, event, event_id, req.reqid)}
