"""A hand-written OpenAPI 3.0 document of canghai's console routes (Flask pages, not
Butterfly handlers, so absent from its /openapi.json), for test_fuzz_console.py.

Every GET page and fragment with its query parameters, every form POST with its fields.
Left out: sign-in/out and the users page's actions (fuzzing them would lock out or delete
the session the fuzzer runs as).
"""

from __future__ import annotations

from typing import Any

STR = {"type": "string"}
INT = {"type": "integer"}
#: a wuxing namespace as wuxing accepts one (negative mode still sends anything)
NS = {"type": "string", "pattern": "^[a-z0-9_]{1,16}$"}
#: a topic as the messages page names one
TOPIC = {"type": "string", "pattern": "^/[a-z][a-z0-9_]{0,11}/[a-z][a-z0-9_]{0,11}$"}
#: an <input type="datetime-local"> value (or none)
LOCAL_TIME = {"type": "string",
              "pattern": "^(20[2-3][0-9]-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])"
                         "T([01][0-9]|2[0-3]):[0-5][0-9])?$"}
GRAY_STATE = {"type": "string",
              "enum": ["pending", "active", "promoting", "promoted", "aborted", "rejected"]}


def _params(**fields: dict) -> list[dict[str, Any]]:
    return [{"name": k, "in": "query", "required": False, "schema": v} for k, v in fields.items()]


GET: dict[str, dict[str, dict]] = {
    "/console/": {},
    "/console/overview/rows": {},
    "/console/series.json": {"range": STR},
    "/console/queues": {"q": STR, "sort": STR, "desc": STR},
    "/console/queues/rows": {"q": STR, "sort": STR, "desc": STR},
    "/console/messages": {"topic": STR, "status": STR, "order": STR, "page": INT,
                          "size": INT, "id": STR},
    "/console/messages/rows": {"topic": STR, "status": STR, "order": STR, "page": INT, "size": INT},
    "/console/messages/counts": {"topic": STR, "status": STR},
    "/console/messages/purge": {"topic": STR, "status": STR},
    "/console/message": {"id": STR},
    "/console/consumers": {},
    "/console/consumers/rows": {},
    "/console/audit": {"page": INT, "user": STR, "action": STR},
    "/console/scheduler/": {"page": INT},
    "/console/scheduler/job": {"id": STR},
    "/console/scheduler/new": {},
    "/console/scheduler/history": {"id": STR},
    "/console/scheduler/check": {"job_trigger": STR, "rule": STR, "job_id": STR, "overlap": STR,
                                 "pause_on_failure": STR, "jitter": STR,
                                 "catchup_window": STR, "timeout": STR,
                                 "misfire_grace_time": STR, "timezone": STR, "start_at": STR,
                                 "end_at": STR, "new": STR},
    "/console/scheduler/lateness.json": {"id": STR},
    "/console/data/": {"namespace": STR, "q": STR, "page": INT},
    "/console/data/section": {"namespace": STR, "section_name": STR, "section_version": STR,
                              "q": STR, "page": INT},
    "/console/data/instance": {"namespace": STR, "instance_name": STR},
    "/console/data/instance/live": {"namespace": STR, "instance_name": STR, "since": INT},
    "/console/data/item": {"id": INT, "page": INT},
    "/console/releases/": {"namespace": NS, "page": INT, "from": INT, "to": INT,
                           "error": STR, "done": STR},
    "/console/releases/gray": {"namespace": NS, "state": GRAY_STATE, "clients_page": INT},
    "/console/releases/gray/one": {"namespace": NS, "id": INT},
    "/console/flows/": {"status": STR, "type": STR, "namespace": STR, "page": INT},
    "/console/flows/new": {},
    "/console/flows/flow": {"id": INT},
    "/console/flows/flow/live": {"id": INT},
    "/console/flows/flow/graph.svg": {"id": INT},
    "/console/flows/waiting": {},
    "/console/services": {},
    "/console/traffic": {"range": STR, "service": STR, "route": STR, "method": STR},
    "/console/traffic/series.json": {"range": STR, "service": STR, "route": STR, "method": STR},
    "/console/search": {"reqid": STR},
}

POST: dict[str, dict[str, dict]] = {
    "/console/message/requeue": {"id": STR},
    "/console/message/delete": {"id": STR},
    "/console/messages/selected": {"topic": STR, "ids": STR, "action": STR, "next": STR},
    "/console/messages/requeue_all": {"topic": STR, "next": STR},
    "/console/messages/purge": {"topic": STR, "status": STR},
    "/console/messages/limits": {"topic": STR, "status": STR, "max_running": STR, "rate": STR,
                                 "rate_window": STR, "action": STR,
                                 "group_max_running": STR, "group_limits": STR},
    "/console/messages/bulk": {"topic": TOPIC, "status": STR,
                               "do": {"type": "string", "enum": ["preview", "act"]},
                               "bulk_action": {"type": "string",
                                               "enum": ["requeue", "delete", "cancel"]},
                               "bulk_status": {"type": "string",
                                               "enum": ["failed", "finished", "queued"]},
                               "error": STR, "time_from": LOCAL_TIME,
                               "time_to": LOCAL_TIME, "stat": STR},
    # one part of a bulk action (the form's script): the browser's datetime-local
    # values, a real topic's shape, and a first part's empty cursor (a made-up one is a
    # 400 the negative mode sends plenty of)
    "/console/messages/bulk/part": {"topic": TOPIC, "status": STR,
                                    "bulk_action": {"type": "string",
                                                    "enum": ["requeue", "delete", "cancel"]},
                                    "bulk_status": {"type": "string",
                                                    "enum": ["failed", "finished", "queued"]},
                                    "error": {"type": "string", "maxLength": 200},
                                    "time_from": LOCAL_TIME, "time_to": LOCAL_TIME,
                                    "stat": {"type": "string", "maxLength": 200},
                                    "cursor": {"type": "string", "maxLength": 0}},
    "/console/scheduler/save": {"job_id": STR, "job_name": STR, "job_trigger": STR, "rule": STR,
                                "cmd": STR, "new": STR, "overlap": STR, "jitter": STR,
                                "catchup_window": STR, "start_at": STR, "end_at": STR},
    "/console/scheduler/action": {"job_id": STR, "action": STR, "note": STR},
    "/console/scheduler/backfill": {"job_id": STR, "start": STR, "end": STR, "overlap": STR,
                                    "mode": STR},
    "/console/data/item": {"namespace": STR, "instance_name": STR, "item_name": STR,
                           "item_value": STR, "revision": STR},
    "/console/data/item/rollback": {"item_id": STR, "revision": STR},
    "/console/releases/review": {"namespace": NS, "review": STR, "approval": STR},
    "/console/releases/draft": {"namespace": NS, "instance_name": STR, "item_name": STR,
                                "item_value": STR},
    "/console/releases/draft/discard": {"namespace": NS, "instance_name": STR,
                                        "item_name": STR},
    "/console/releases/publish": {"namespace": NS, "message": STR},
    "/console/releases/decide": {"namespace": NS, "decision": STR, "comment": STR,
                                 "request": STR},
    "/console/releases/rollback": {"namespace": NS, "revision": STR, "message": STR},
    "/console/releases/gray/create": {"namespace": NS, "clients": STR, "labels": STR,
                                      "ips": STR, "revision": STR, "message": STR},
    "/console/releases/gray/action": {"namespace": NS, "gray_id": STR, "action": STR,
                                      "comment": STR},
    "/console/flows/create": {"job_namespace": STR, "job_type": STR, "job_extra": STR},
    "/console/flows/action": {"job_id": STR, "action": STR},
    "/console/flows/rerun": {"job_id": STR, "task_id": STR, "params": STR},
    "/console/flows/decide": {"job_id": STR, "signal": STR, "decision": STR, "comment": STR},
}

#: fields a form always sends (its hidden and select fields): without them the handler
#: refuses before doing anything, so the positive mode always sends them
REQUIRED: dict[str, list[str]] = {
    "/console/messages/bulk": ["topic", "do", "bulk_action", "bulk_status"],
    "/console/messages/bulk/part": ["topic", "bulk_action", "bulk_status"],
}

ANY = {"default": {"description": "a page, a redirect or a refusal with x-reason"}}


def document() -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for path, fields in GET.items():
        paths[path] = {"get": {"parameters": _params(**fields), "responses": ANY}}
    for path, fields in POST.items():
        body = {"type": "object", "properties": fields, "additionalProperties": False}
        if path in REQUIRED:
            body["required"] = REQUIRED[path]
        paths.setdefault(path, {})["post"] = {
            "requestBody": {"required": True, "content": {
                "application/x-www-form-urlencoded": {"schema": body}}},
            "responses": ANY}
    return {"openapi": "3.0.3", "info": {"title": "canghai console", "version": "1"},
            "paths": paths}
