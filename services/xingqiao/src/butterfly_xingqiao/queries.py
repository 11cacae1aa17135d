"""Read side: lists with the original's filters, paging and an allow-listed order, and the
JSON shape of jobs and tasks (datetimes as the framework renders them)."""

from __future__ import annotations

from typing import Any

from butterfly_common import Refusal
from butterfly_common.params import ParamError

from .lifecycle import TASK_ACTIVE
from .models import Job, Task, loads, split_list

JOB_LIST_FIELDS = ("job_id", "job_namespace", "job_reqid", "job_name", "job_status",
                   "job_type", "job_version", "ret_stat", "operator", "job_client",
                   "job_cost", "c_time", "s_time", "e_time")
JOB_ORDER = frozenset(JOB_LIST_FIELDS)
TASK_ORDER = frozenset(("task_id", "task_label", "task_status", "task_cost", "ret_stat",
                        "c_time", "u_time"))
MAX_PAGE = 1000
INTERNAL = ("u_ts",)


def _order(model: Any, order_by: str | None, order_dir: str | None, allowed: frozenset,
           default: str) -> Any:
    name = order_by or default
    if name not in allowed:
        raise ParamError(f"invalid: orderBy (one of {', '.join(sorted(allowed))})")
    direction = (order_dir or ("desc" if order_by is None else "asc")).lower()
    if direction not in ("asc", "desc"):
        raise ParamError("invalid: orderDir (asc or desc)")
    field = getattr(model, name)
    return field.desc() if direction == "desc" else field.asc()


def _page(page_index: int, page_size: int) -> tuple[int, int]:
    if page_index < 1 or not 1 <= page_size <= MAX_PAGE:
        raise ParamError(f"invalid: page_index >= 1 and page_size 1..{MAX_PAGE}")
    return page_index, page_size


def job_row(job: Job, full: bool = False) -> dict[str, Any]:
    if not full:
        return {name: getattr(job, name) for name in JOB_LIST_FIELDS}
    out = {k: v for k, v in job.__data__.items() if k not in INTERNAL}
    out["ret_data"] = loads(job.ret_data, {})
    out["job_extra"] = loads(job.job_extra, {})
    return out


def task_row(task: Task) -> dict[str, Any]:
    out = {k: v for k, v in task.__data__.items() if k not in INTERNAL}
    out["task_params"] = loads(task.task_params)
    out["task_extra"] = loads(task.task_extra)
    out["ret_data"] = loads(task.ret_data)
    out["task_undo"] = loads(task.task_undo)
    for key in ("task_requires", "task_provides", "task_dependencies"):
        out[key] = split_list(getattr(task, key))
    if task.task_subflow is not None:
        out["child_job_id"] = int(task.task_child) or None  # the console's link
    return out


def list_jobs(filters: dict[str, Any], order_by: str | None, order_dir: str | None,
              page_index: int, page_size: int) -> dict[str, Any]:
    """The original's filters: equality, except ``job_name`` which is SQL LIKE as given."""
    page_index, page_size = _page(page_index, page_size)
    query = Job.select().where(Job.is_valid == True)  # noqa: E712
    for name, value in filters.items():
        if value is None or value == "":
            continue
        field = getattr(Job, name)
        query = query.where(field ** value if name == "job_name" else field == value)
    total = query.count()
    rows = query.order_by(_order(Job, order_by, order_dir, JOB_ORDER, "job_id")) \
        .paginate(page_index, page_size)
    return {"total": total, "list": [job_row(j) for j in rows]}


def list_tasks(job_id: int, order_by: str | None = None, order_dir: str | None = None,
               page_index: int = 1, page_size: int = MAX_PAGE) -> dict[str, Any]:
    page_index, page_size = _page(page_index, page_size)
    query = Task.select().where(Task.job_id == job_id)
    total = query.count()
    if total == 0 and Job.get_or_none(Job.job_id == job_id) is None:
        raise Refusal("ERR_JOB_NOT_EXIST", f"no flow with job_id {job_id}", http=404)
    if order_by is None:
        ordered = query.order_by(Task.task_id.asc())
    else:
        ordered = query.order_by(_order(Task, order_by, order_dir, TASK_ORDER, "task_id"))
    return {"total": total, "list": [task_row(t) for t in ordered.paginate(page_index,
                                                                           page_size)]}


def status_counts(job_id: int) -> dict[str, int]:
    counts: dict[str, int] = {}
    for task in Task.select(Task.task_status).where(Task.job_id == job_id):
        counts[task.task_status] = counts.get(task.task_status, 0) + 1
    return counts


def map_progress(job_id: int) -> dict[str, dict[str, int]]:
    """Each map task's items by state (``total`` too), keyed by the map task's label."""
    from peewee import fn

    parents = {t.task_id: t.task_label for t in Task.select(Task.task_id, Task.task_label)
               .where((Task.job_id == job_id) & Task.task_map_over.is_null(False))}
    out: dict[str, dict[str, int]] = {label: {"total": 0} for label in parents.values()}
    if not parents:
        return out
    rows: Any = (Task.select(Task.task_parent, Task.task_status, fn.COUNT(Task.task_id))
                 .where((Task.job_id == job_id) & Task.task_parent.in_(list(parents)))
                 .group_by(Task.task_parent, Task.task_status).tuples())
    for parent, status, n in rows:
        entry = out[parents[parent]]
        entry[status] = int(n)
        entry["total"] += int(n)
    return out


def job_lock(job: Job, counts: dict[str, int]) -> bool:
    """The original admin page's ``job_lock`` from xingqiao's own state.

    The original held a flow with a lock flag while a worker advanced it (its HA lock).
    xingqiao has no such row lock (every move is a compare-and-set, ``store.py``); what
    holds a flow is its work out on the queue: true while the flow runs with a task whose
    attempt is published (``pending``, ``started``, or ``retrying`` with its next attempt
    delayed), so its next step comes from that message's completion notice (or the sweep).
    False for an ended flow, and for a running one between two steps."""
    if job.job_status != "started" or not any(counts.get(s, 0) for s in TASK_ACTIVE):
        return False
    # a map task or a signal task in started has no message of its own: it holds nothing
    return bool(Task.select(Task.task_id).where(
        (Task.job_id == job.job_id) & Task.task_status.in_(TASK_ACTIVE)
        & (Task.task_reqid != "")).exists())
