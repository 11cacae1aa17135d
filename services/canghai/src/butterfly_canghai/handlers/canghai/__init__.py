"""canghai: the original API names the original admin (amis) pages call, and
``service_list`` (the fleet's services with their routes and traffic, ``catalog.py``).

Names the admin pages call (``queue_list``, ``msg_show``, ...) and the older code names
(``list_queues``, ``msg_info``, ...) are the same handlers (aliases at the end). Answers
are ``{"stat": ..., "data": ...}`` with no top-level ``status`` / ``msg`` keys (amis would
read them as errors). Reads need a viewer (any signed-in identity, a trusted proxy's
``X-Username`` included), ``msg_delete`` / ``queue_empty`` an admin (session with
``X-CSRF-Token``, JWT, the admin token, or a trusted proxy's user with ``X-Role: admin``).
None of them is a queue topic.
"""

from butterfly_canghai import catalog, legacy, queues
from butterfly_canghai.config import CanghaiConfig
from butterfly_canghai.guard import identity_of, log_action
from butterfly_common import Refusal, __version__, api, retstat
from butterfly_common.mq import STATUSES
from butterfly_common.paging import check_page
from butterfly_common.runtime import get_config

REGISTRIES = STATUSES  # queued, delayed, started, finished, failed

def _bad(reason: str) -> Refusal:
    return Refusal(retstat.ERR_BAD_PARAMS, reason, http=400)


def _no_message(msg_id: str) -> Refusal:
    return Refusal("ERR_MSG_NOT_EXIST", f"no message {msg_id!r}", http=404)


@api(topic=False)
def queue_list(req):
    """Every topic with its queued / started / finished / failed counts, sorted by name."""
    identity_of(req)
    rows = queues.topic_counts()
    return retstat.OK, {"data": {"queues": [legacy.queue_row(r) for r in rows]}}


@api(topic=False)
def worker_list(req):
    """Every registered consumer, live ones first."""
    identity_of(req)
    rows = [legacy.worker_row(w, __version__) for w in queues.workers()]
    rows.sort(key=lambda r: (r["state"] != "started", -r["queues_count"], r["name"]))
    return retstat.OK, {"data": {"workers": rows}}


@api(topic=False)
def worker_show(req, name: str):
    """One consumer's record with the topics it serves."""
    identity_of(req)
    for worker in queues.workers():
        if worker["id"] == name:
            return retstat.OK, {"data": legacy.worker_detail(worker, __version__)}
    raise Refusal("ERR_WORKER_NOT_EXIST", f"no worker {name!r}", http=404)


@api(topic=False)
def msg_list(req, queue_name: str, registry_name: str = "queued", page_size: int = 20,
             page_index: int = 1, newest_first: bool = False):
    """One page of a topic's messages in a status (queued in list order, others by
    expiry), as ``data.list`` / ``data.total``."""
    identity_of(req)
    if registry_name not in REGISTRIES:
        raise _bad(f"registry_name must be one of {', '.join(REGISTRIES)}")
    check_page(page_index, page_size)
    try:
        total, msgs = queues.list_messages(queue_name, registry_name, page_index, page_size,
                                           newest_first)
    except ValueError as exc:
        raise _bad(str(exc)) from None
    return retstat.OK, {"data": {"list": [legacy.msg_row(m) for m in msgs], "total": total,
                                 "name": queue_name, "registry_name": registry_name}}


@api(topic=False)
def msg_show(req, msg_id: str):
    """One message: data, status, times, worker, result, error, cost."""
    identity_of(req)
    m = queues.get_message(msg_id)
    if m is None:
        raise _no_message(msg_id)
    return retstat.OK, {"data": legacy.msg_detail(m)}


@api(topic=False)
def service_list(req, minutes: int = catalog.WINDOW):
    """Every service of the fleet (fleet.toml's and those that announce themselves, e.g. a
    ``butterfly new`` project) with its instances and their state, its routes and the
    calls / errors of each over the last ``minutes`` (1..1440, default 60)."""
    identity_of(req)
    if not 1 <= minutes <= 1440:
        raise _bad("minutes must be 1..1440")
    return retstat.OK, {"data": {"services": catalog.services(get_config(CanghaiConfig), minutes),
                                 "minutes": minutes}}


@api(topic=False)
def msg_delete(req, msg_id: str):
    """Delete one message whatever its status (admin)."""
    who = identity_of(req, "admin", write=True)
    m = queues.get_message(msg_id)
    if m is None:
        raise _no_message(msg_id)
    queues.broker().delete(m.topic, m.id)
    log_action(req, who, "msg_delete", f"{m.topic} {m.id}")
    return retstat.OK, {"data": {"id": m.id}}


@api(topic=False)
def queue_empty(req, queue_name: str, registry_name: str = "queued"):
    """Delete every message of a topic in a status, orphans included (admin)."""
    who = identity_of(req, "admin", write=True)
    if registry_name not in (*REGISTRIES, "all"):
        raise _bad(f"registry_name must be one of {', '.join(REGISTRIES)} or all")
    try:
        n = queues.broker().purge(queue_name, registry_name)
    except ValueError as exc:
        raise _bad(str(exc)) from None
    log_action(req, who, "queue_empty", f"{queue_name} {registry_name}", f"deleted={n}")
    return retstat.OK, {"data": {"deleted_count": n}}


# -- the older code names (canghai 1.0.7) -------------------------------------------------
list_queues = queue_list
list_workers = worker_list
worker_info = worker_show
list_msgs = msg_list
msg_info = msg_show
delete_msg = msg_delete
empty_queue = queue_empty
