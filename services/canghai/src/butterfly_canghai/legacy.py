"""The original canghai API's shapes, for the original admin (amis) pages.

Field names are the ones those pages read; times are ``YYYY-MM-DD HH:MM:SS`` in server
local time, ``-`` when unset; payloads and results are JSON text, as the pages show them.
"""

from __future__ import annotations

import json
import time
from typing import Any

from butterfly_common.mq import Message

from .queues import TopicCounts


def fmt_time(ts: float | None) -> str:
    if not ts:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def queue_row(row: TopicCounts) -> dict[str, Any]:
    c = row.counts
    return {"name": row.topic, "count": c["queued"],
            "started_msg_registry_count": c["started"],
            "finished_msg_registry_count": c["finished"],
            "failed_msg_registry_count": c["failed"]}


def _nickname(worker: dict[str, Any]) -> str:
    info = worker.get("info") or {}
    service, host = info.get("service"), info.get("host")
    return f"{service}@{host}" if service and host else worker["id"]


def _state(worker: dict[str, Any]) -> str:
    return "started" if worker.get("alive") else "dead"


def worker_row(worker: dict[str, Any], version: str) -> dict[str, Any]:
    info = worker.get("info") or {}
    return {"name": worker["id"], "nickname": _nickname(worker),
            "version": str(info.get("version") or version),
            "queues_count": len(worker.get("topics") or []), "state": _state(worker)}


def worker_detail(worker: dict[str, Any], version: str) -> dict[str, Any]:
    info = worker.get("info") or {}
    return {**worker_row(worker, version), "queues": list(worker.get("topics") or []),
            "python_version": str(info.get("python_version") or "-"),
            "home_dir": "-", "host": str(info.get("host") or "-"),
            "pid": info.get("pid"), "threads": info.get("threads"),
            "birth_date": fmt_time(info.get("started_at")),
            "last_heartbeat": fmt_time(worker.get("last_seen")),
            "failed_msg_count": int(info.get("failed") or 0),
            "successful_msg_count": int(info.get("processed") or 0),
            "total_working_time": float(info.get("working_time") or 0.0)}


def msg_row(m: Message) -> dict[str, Any]:
    return {"id": m.id, "msg_data": _json(m.data), "created_at": fmt_time(m.created_at),
            "ended_at": fmt_time(m.ended_at), "exc_info": m.error, "description": m.topic}


def msg_detail(m: Message) -> dict[str, Any]:
    return {"id": m.id, "msg_data": _json(m.data), "status": m.status, "origin": m.topic,
            "created_at": fmt_time(m.created_at), "enqueued_at": fmt_time(m.enqueued_at),
            "started_at": fmt_time(m.started_at), "ended_at": fmt_time(m.ended_at),
            "handle_worker": m.worker or "-",
            "result": _json(m.result) if m.result is not None else "",
            "exc_info": m.error, "description": m.topic, "cost": round(m.cost, 6),
            # how far the (last) attempt got, as its handler reported: {done, total, note}
            "progress": m.progress,
            # why the latest attempt failed (mq.ErrorKind: timeout, exception, ...), or None
            "error_kind": m.error_kind}
