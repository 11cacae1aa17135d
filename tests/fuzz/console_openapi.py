"""A hand-written OpenAPI 3.0 document of canghai's console routes (Flask pages, not
Butterfly handlers, so absent from its /openapi.json), for test_fuzz_console.py.

Every GET page and fragment with its query parameters, every form POST with its fields,
each in the shape its handler accepts (choices as enums, numbers with their bounds, ids,
topics and times in their formats, the fields a handler needs as required), so positive
mode reaches the handler's work and negative mode its refusals.
Left out: sign-in/out and the users page's actions (fuzzing them would lock out or delete
the session the fuzzer runs as).
"""

from __future__ import annotations

from typing import Any

STR = {"type": "string"}
INT = {"type": "integer"}


def _enum(*values: str) -> dict[str, Any]:
    return {"type": "string", "enum": list(values)}


def _text(pattern: str) -> dict[str, Any]:
    """A form field's text in the shape its handler parses (``pattern`` anchored)."""
    return {"type": "string", "pattern": f"^{pattern}$"}


def _int(lo: int, hi: int) -> dict[str, Any]:
    return {"type": "integer", "minimum": lo, "maximum": hi}


#: a wuxing namespace as wuxing accepts one (negative mode still sends anything)
NS = {"type": "string", "pattern": "^[a-z0-9_]{1,16}$"}
GRAY_STATE = _enum("pending", "active", "promoting", "promoted", "aborted", "rejected")
#: a page number as the pages clamp it (int_arg: 1..10**6)
PAGE = _int(1, 10**6)
#: an id a handler takes (0 < id < 2**62), as a query parameter and as form text
ID = _int(1, 2**62 - 1)
ID_TEXT = _text("[1-9][0-9]{0,8}")
#: a queue topic as the broker accepts one: a handler path /app/handler (mq/keys.py)
TOPIC = _text("/[a-z_][a-z0-9_]{0,15}/[a-z_][a-z0-9_]{0,15}")
BULK_ACTION = _enum("requeue", "delete", "cancel")
#: the message statuses (mq/message.py STATUSES)
STATUS = _enum("queued", "delayed", "started", "finished", "failed")
#: a message id, a batch id (mq/batch.py check_batch_id)
MSG_ID = _text("[A-Za-z0-9_.:@-]{1,40}")
#: the messages page's "go to" box: a message id or a request id, empty when unused
JUMP = _text("[A-Za-z0-9_.:@-]{0,40}")
BATCH_ID = _text("[A-Za-z0-9_.:@-]{1,40}")
#: a request id (reqid.is_valid_reqid: 16 upper-case hex digits)
REQID = _text("[0-9A-F]{16}")
#: flows: xingqiao's job states (flow_pages.JOB_STATES), a name field
JOB_STATE = _enum("started", "finished", "failed", "canceled", "timed_out")
NAME = _text("[a-z][a-z0-9_-]{0,31}")
#: the scheduler's triggers and overlap policies (schedule_pages.TRIGGERS, OVERLAPS)
TRIGGER = _enum("cron", "interval", "date")
OVERLAP = _enum("allow", "skip", "buffer_one", "buffer_all", "cancel_other", "forbid")
#: a rule of each trigger, as ruqi reads one (an interval, a cron line, a date)
RULE = {"anyOf": [_text("[1-9][0-9]{0,3}[smhd]"),
                  _text("(\\*|[0-5]?[0-9]) (\\*|1?[0-9]|2[0-3]) \\* \\* \\*"),
                  _text("20[3-9][0-9]-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8]) "
                        "([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]")]}
#: a time as ruqi takes one (YYYY-MM-DD HH:MM:SS) and as a browser's datetime-local sends
WHEN = _text("20[0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8]) "
             "([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]")
LOCAL_TIME = _text("20[0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])T"
                   "([01][0-9]|2[0-3]):[0-5][0-9]")
#: the job options' numbers as ruqi bounds them (jobs.py MAX_*), as form text
SECONDS = _text("[1-9][0-9]{0,3}")
TIMEZONE = _enum("UTC", "Asia/Shanghai", "Europe/Berlin", "America/New_York")
#: the limits form's fields (limits_form.py: whole counts 1..MAX_LIMIT, a window in s
#: with at most ms precision, ``group=cap`` lines)
COUNT = _text("[1-9][0-9]{0,5}")
WINDOW = _text("[1-9][0-9]{0,3}(\\.[0-9]{1,3})?")
GROUP_LIMITS = _text("([a-z][a-z0-9_]{0,15}=[1-9][0-9]{0,3}\\n){0,3}")
DIGIT_FLAG = _enum("0", "1")


JSON_OBJECT = _text('\\{("[a-z]{1,8}": "[a-z0-9]{0,8}")?\\}')
IPS = _text("10\\.[0-9]{1,2}\\.0\\.0/16")


def req(schema: dict[str, Any]) -> dict[str, Any]:
    """A field the handler refuses without (a required parameter, a required form field)."""
    return {**schema, REQUIRED: True}


REQUIRED = "x-required"


def _plain(schema: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in schema.items() if k != REQUIRED}


def _params(**fields: dict) -> list[dict[str, Any]]:
    return [{"name": k, "in": "query", "required": bool(v.get(REQUIRED)), "schema": _plain(v)}
            for k, v in fields.items()]


ID_REQ = {"id": req(ID)}
#: the queues page's sort keys (pages.SORTS)
SORT = _enum("topic", "queued", "delayed", "started", "finished", "failed", "consumers")

GET: dict[str, dict[str, dict]] = {
    "/console/": {},
    "/console/overview/rows": {},
    "/console/series.json": {"range": _enum("hour", "day")},
    "/console/queues": {"q": STR, "sort": SORT,
                        "desc": DIGIT_FLAG},
    "/console/queues/rows": {"q": STR, "sort": SORT,
                             "desc": DIGIT_FLAG},
    "/console/messages": {"topic": TOPIC, "status": STATUS,
                          "order": _enum("newest", "oldest", "priority"), "page": PAGE,
                          "size": _int(1, 200), "id": JUMP},
    "/console/messages/rows": {"topic": TOPIC, "status": STATUS,
                               "order": _enum("newest", "oldest", "priority"), "page": PAGE,
                               "size": _int(1, 200)},
    "/console/messages/counts": {"topic": req(TOPIC), "status": STATUS},
    "/console/messages/purge": {"topic": req(TOPIC), "status": STATUS},
    "/console/message": {"id": req(MSG_ID)},
    "/console/consumers": {},
    "/console/consumers/rows": {},
    "/console/batches": {"page": PAGE},
    "/console/batch": {"id": req(BATCH_ID)},
    "/console/audit": {"page": PAGE, "user": STR, "action": STR},
    "/console/scheduler/": {"page": PAGE},
    "/console/scheduler/job": {"id": req(NAME)},
    "/console/scheduler/new": {},
    "/console/scheduler/history": {"id": NAME},
    "/console/scheduler/check": {"job_trigger": req(TRIGGER), "rule": req(RULE), "job_id": NAME,
                                 "overlap": OVERLAP, "pause_on_failure": _text("[0-9]{1,3}"),
                                 "jitter": _text("[0-9]"), "catchup_window": SECONDS,
                                 "timeout": SECONDS, "misfire_grace_time": SECONDS,
                                 "timezone": TIMEZONE, "start_at": WHEN, "end_at": WHEN,
                                 "new": DIGIT_FLAG},
    "/console/scheduler/lateness.json": {"id": NAME},
    "/console/data/": {"namespace": NS, "q": NAME, "page": PAGE},
    "/console/data/section": {"namespace": req(NS), "section_name": req(NAME),
                              "section_version": req(_text("[0-9a-z.]{1,16}")), "q": NAME,
                              "page": PAGE},
    "/console/data/instance": {"namespace": req(NS), "instance_name": req(NAME)},
    "/console/data/instance/live": {"namespace": req(NS), "instance_name": req(NAME),
                                    "since": _int(0, 2**62)},
    "/console/data/item": {"id": req(ID), "page": PAGE},
    "/console/releases/": {"namespace": NS, "page": PAGE, "from": _int(0, 2**62),
                           "to": _int(0, 2**62), "error": STR, "done": STR},
    "/console/releases/gray": {"namespace": req(NS), "state": GRAY_STATE,
                               "clients_page": PAGE},
    "/console/releases/gray/one": {"namespace": req(NS), "id": req(ID)},
    "/console/flows/": {"status": JOB_STATE, "type": NAME, "namespace": NAME, "page": PAGE},
    "/console/flows/new": {},
    "/console/flows/flow": ID_REQ,
    "/console/flows/flow/live": ID_REQ,
    "/console/flows/flow/graph.svg": ID_REQ,
    "/console/flows/waiting": {},
    "/console/services": {},
    "/console/traffic": {"range": _enum("5m", "1h", "1d"), "service": NAME, "route": STR,
                         "method": _enum("GET", "POST")},
    "/console/traffic/series.json": {"range": _enum("5m", "1h", "1d"), "service": NAME,
                                     "route": STR, "method": _enum("GET", "POST")},
    "/console/search": {"reqid": REQID},
}

POST: dict[str, dict[str, dict]] = {
    "/console/message/requeue": {"id": req(MSG_ID)},
    "/console/message/delete": {"id": req(MSG_ID)},
    "/console/messages/selected": {"topic": req(TOPIC), "ids": MSG_ID,
                                   "action": req(_enum("requeue", "delete")), "next": STR},
    "/console/messages/requeue_all": {"topic": req(TOPIC), "next": STR},
    "/console/messages/purge": {"topic": req(TOPIC), "status": req(STATUS)},
    "/console/messages/limits": {"topic": req(TOPIC), "status": STATUS, "max_running": COUNT,
                                 "rate": COUNT, "rate_window": WINDOW,
                                 "action": _enum("set", "clear"),
                                 "group_max_running": COUNT, "group_limits": GROUP_LIMITS},
    "/console/messages/bulk": {"topic": req(TOPIC), "status": STATUS,
                               "do": _enum("preview", "act"),
                               "bulk_action": req(BULK_ACTION), "bulk_status": req(STATUS),
                               "error": {"type": "string", "maxLength": 200},
                               "time_from": LOCAL_TIME, "time_to": LOCAL_TIME,
                               "stat": _enum("OK", "ERR_NOT_FOUND", "ERR_INTERNAL")},
    # one part of a bulk action (the form's script): a first part's empty cursor (a
    # made-up one is a 400 the negative mode sends plenty of)
    "/console/messages/bulk/part": {"topic": req(TOPIC), "status": STATUS,
                                    "bulk_action": req(BULK_ACTION),
                                    "bulk_status": req(STATUS),
                                    "error": {"type": "string", "maxLength": 200},
                                    "time_from": LOCAL_TIME, "time_to": LOCAL_TIME,
                                    "stat": _enum("OK", "ERR_NOT_FOUND", "ERR_INTERNAL"),
                                    "cursor": {"type": "string", "maxLength": 0}},
    "/console/batch/cancel": {"id": req(BATCH_ID)},
    "/console/scheduler/save": {"job_id": req(NAME), "job_name": NAME,
                                "job_trigger": req(TRIGGER), "rule": req(RULE), "cmd": STR,
                                "new": DIGIT_FLAG, "overlap": OVERLAP,
                                "jitter": _text("[0-9]"), "catchup_window": SECONDS,
                                "start_at": WHEN, "end_at": WHEN},
    "/console/scheduler/action": {"job_id": req(NAME),
                                  "action": req(_enum("pause", "resume", "run", "remove")),
                                  "note": {"type": "string", "maxLength": 500}},
    "/console/scheduler/backfill": {"job_id": req(NAME), "start": req(WHEN), "end": req(WHEN),
                                    "overlap": OVERLAP, "mode": _enum("preview", "run")},
    "/console/data/item": {"namespace": req(NS), "instance_name": req(NAME),
                           "item_name": req(NAME), "item_value": req(STR),
                           "revision": req(_text("[0-9]{1,6}"))},
    "/console/data/item/rollback": {"item_id": req(ID_TEXT), "revision": req(ID_TEXT)},
    "/console/releases/review": {"namespace": req(NS), "review": DIGIT_FLAG,
                                 "approval": DIGIT_FLAG},
    "/console/releases/draft": {"namespace": req(NS), "instance_name": req(NAME),
                                "item_name": req(NAME), "item_value": STR},
    "/console/releases/draft/discard": {"namespace": req(NS), "instance_name": NAME,
                                        "item_name": NAME},
    "/console/releases/publish": {"namespace": req(NS), "message": STR},
    "/console/releases/decide": {"namespace": req(NS),
                                 "decision": req(_enum("approve", "reject")), "comment": STR,
                                 "request": ID_TEXT},
    "/console/releases/rollback": {"namespace": req(NS), "revision": req(ID_TEXT),
                                   "message": STR},
    "/console/releases/gray/create": {"namespace": req(NS), "clients": NAME, "labels": NAME,
                                      "ips": IPS, "revision": ID_TEXT, "message": STR},
    "/console/releases/gray/action": {"namespace": req(NS), "gray_id": req(ID_TEXT),
                                      "action": req(_enum("promote", "abort")),
                                      "comment": STR},
    "/console/flows/create": {"job_namespace": req(NAME), "job_type": req(NAME),
                              "job_extra": JSON_OBJECT},
    "/console/flows/action": {"job_id": req(ID_TEXT),
                              "action": req(_enum("retry", "cancel", "delete"))},
    "/console/flows/rerun": {"job_id": req(ID_TEXT), "task_id": req(ID_TEXT),
                             "params": JSON_OBJECT},
    "/console/flows/decide": {"job_id": req(ID_TEXT), "signal": req(NAME),
                              "decision": req(_enum("approve", "reject")), "comment": STR},
}

#: The bulk form (and its parts): each action with the statuses it takes (mq/bulk.py
#: ACTIONS), so a positive case is one the broker runs.
BULK_VARIANTS: list[dict[str, dict]] = [
    {"bulk_action": req(_enum("requeue")), "bulk_status": req(_enum("failed", "finished"))},
    {"bulk_action": req(_enum("delete")), "bulk_status": req(STATUS)},
    {"bulk_action": req(_enum("cancel")), "bulk_status": req(_enum("queued", "delayed"))},
]
#: Forms whose fields depend on each other: the body is any one of these variants (each
#: overriding the fields it names).
VARIANTS: dict[str, list[dict[str, dict]]] = {
    "/console/messages/bulk": BULK_VARIANTS,
    "/console/messages/bulk/part": BULK_VARIANTS,
}

ANY = {"default": {"description": "a page, a redirect or a refusal with x-reason"}}


def _body(fields: dict[str, dict]) -> dict[str, Any]:
    return {"type": "object", "additionalProperties": False,
            "properties": {k: _plain(v) for k, v in fields.items()},
            "required": [k for k, v in fields.items() if v.get(REQUIRED)]}


def document() -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for path, fields in GET.items():
        paths[path] = {"get": {"parameters": _params(**fields), "responses": ANY}}
    for path, fields in POST.items():
        variants = [_body({**fields, **v}) for v in VARIANTS.get(path, [])]
        body = {"anyOf": variants} if variants else _body(fields)
        paths.setdefault(path, {})["post"] = {
            "requestBody": {"required": True, "content": {
                "application/x-www-form-urlencoded": {"schema": body}}},
            "responses": ANY}
    return {"openapi": "3.0.3", "info": {"title": "canghai console", "version": "1"},
            "paths": paths}
