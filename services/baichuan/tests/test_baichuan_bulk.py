"""``/baichuan/bulk``: requeue / delete / cancel by filter, a dry run first (operator),
acting admin only and audited; bad input a clear 4xx."""

from __future__ import annotations

import json
import logging

import pytest
from baichuan_helpers import ADMIN, OPERATOR, TOPIC, refused

from butterfly_common.mq import Broker


def dead_letters(broker: Broker, errors: list[str]) -> list[str]:
    ids = [broker.publish(TOPIC, {"n": n}).msg_id for n in range(len(errors))]
    for msg, error in zip(broker.claim(TOPIC, "w1", len(errors)), errors, strict=True):
        assert broker.fail(msg, error, retry=False) == "failed"
    return ids


def bulk(client, headers=ADMIN, **args):
    return client.post("/baichuan/bulk", json={"topic": TOPIC, **args}, headers=headers)


def test_dry_run_then_requeue_audited(client, served, broker, caplog):
    served()
    ids = dead_letters(broker, ["db timeout", "KeyError", "db timeout"])
    preview = bulk(client, OPERATOR, action="requeue", status="failed", error="db",
                   dry_run=True).get_json()
    assert preview == {"stat": "OK", "topic": TOPIC, "action": "requeue", "dry_run": True,
                       "filter": {"status": "failed", "error": "db"}, "matched": 2,
                       "acted": 0, "scanned": 3, "steps": 1}
    assert broker.counts(TOPIC)["failed"] == 3
    with caplog.at_level(logging.WARNING, logger="butterfly.baichuan.audit"):
        body = bulk(client, action="requeue", status="failed", error="db", step=1).get_json()
    assert (body["stat"], body["matched"], body["acted"], body["steps"]) == ("OK", 2, 2, 4)
    assert [broker.get(i).status for i in ids] == ["queued", "failed", "queued"]
    audit = [r.getMessage() for r in caplog.records if r.name == "butterfly.baichuan.audit"]
    assert len(audit) == 1 and "bulk requeue" in audit[0] and "admin-token" in audit[0]
    assert json.dumps({"error": "db", "status": "failed"}) in audit[0]
    assert "acted 2" in audit[0]


def test_cancel_and_delete(client, served, broker):
    served()
    queued = [broker.publish(TOPIC, {"n": n}).msg_id for n in range(3)]
    body = bulk(client, action="cancel", status="queued").get_json()
    assert (body["stat"], body["acted"]) == ("OK", 3)
    shown = client.get("/baichuan/msg", query_string={"msg_id": queued[0]}).get_json()
    assert (shown["status"], shown["error_kind"]) == ("failed", "canceled")
    body = bulk(client, action="delete", status="failed", until=2**31).get_json()
    assert (body["stat"], body["acted"]) == ("OK", 3)
    assert broker.counts(TOPIC)["failed"] == 0


@pytest.mark.parametrize("headers,code,stat", [
    ({}, 401, "ERR_UNAUTHORIZED"), (OPERATOR, 403, "ERR_FORBIDDEN")])
@pytest.mark.parametrize("action,status", [
    ("requeue", "failed"), ("delete", "failed"), ("cancel", "queued")])
def test_acting_needs_admin(client, served, broker, headers, code, stat, action, status):
    served()
    dead_letters(broker, ["x"])
    broker.publish(TOPIC, {})
    before = broker.counts(TOPIC)
    refused(bulk(client, headers, action=action, status=status), code, stat)
    assert broker.counts(TOPIC) == before


def test_a_dry_run_needs_the_operator(client, served, broker):
    served()
    refused(bulk(client, {}, action="delete", status="failed", dry_run=True), 401,
            "ERR_UNAUTHORIZED")


@pytest.mark.parametrize("args,code,stat,word", [
    ({"action": "purge", "status": "failed"}, 400, "ERR_BAD_PARAMS", "action"),
    ({"action": "requeue", "status": "queued"}, 400, "ERR_BAD_STATUS", "requeue takes"),
    ({"action": "cancel", "status": "failed"}, 400, "ERR_BAD_STATUS", "cancel takes"),
    ({"action": "delete", "status": "gone"}, 400, "ERR_BAD_STATUS", "gone"),
    ({"action": "requeue", "status": "failed", "since": 20, "until": 10}, 400,
     "ERR_BAD_PARAMS", "since"),
    ({"action": "requeue", "status": "failed", "since": "yesterday"}, 400,
     "ERR_BAD_PARAMS", "since"),
    ({"action": "requeue", "status": "failed", "until": -5}, 400, "ERR_BAD_PARAMS",
     "until"),
    ({"action": "requeue", "status": "failed", "since": 1e308}, 400, "ERR_BAD_PARAMS",
     "since"),
    ({"action": "requeue", "status": "failed", "step": 0}, 400, "ERR_BAD_PARAMS", "step"),
    ({"action": "requeue", "status": "failed", "step": 20000}, 400, "ERR_BAD_PARAMS",
     "step"),
    ({"action": "requeue"}, 400, "ERR_BAD_PARAMS", "status"),
    ({"action": "requeue", "status": "failed", "topic": "/x y"}, 400, "ERR_BAD_TOPIC",
     "whitespace")])
def test_bad_input_is_a_4xx(client, served, broker, args, code, stat, word):
    served()
    dead_letters(broker, ["x"])
    refused(bulk(client, **args), code, stat, word)
    assert broker.counts(TOPIC)["failed"] == 1


def test_progress_is_logged_every_ten_steps(client, served, broker, caplog):
    served()
    dead_letters(broker, ["x"] * 25)
    with caplog.at_level(logging.INFO, logger="butterfly_baichuan.queue_admin"):
        body = bulk(client, action="delete", status="failed", step=1).get_json()
    assert (body["acted"], body["steps"]) == (25, 26)
    lines = [r.getMessage() for r in caplog.records if r.name == "butterfly_baichuan.queue_admin"]
    assert lines == [f"bulk delete failed on {TOPIC}: {n} scanned, {n} matched, {n} acted so far"
                     for n in (10, 20)]
