"""Bulk action by filter on the messages page: preview (operator, a dry run's count), act
(admin: checked before the broker is touched, audited), bad input and refusals said on the
page as a 400, never a 500."""

from __future__ import annotations

import datetime as dt
import html as htmllib
import re
import time

import pytest
from canghai_helpers import PASSWORD, page_csrf, sign_in

from butterfly_canghai import audit
from butterfly_common.mq import Broker

TOPIC = "/bulk/topic"
PAGE = f"/console/messages?topic={TOPIC}&status=failed"


def _failed(broker: Broker, errors: list[str]) -> list[str]:
    """Dead letters of TOPIC, one per error."""
    ids = [broker.publish(TOPIC, {"i": i}, force=True).msg_id for i in range(len(errors))]
    for error in errors:
        (msg,) = broker.claim(TOPIC, "w1", 1)
        assert broker.fail(msg, error, retry=False) == "failed"
    return ids


def _signed_in(client, name: str) -> str:
    sign_in(client, name)
    client.get("/console/lang/en?next=/console/")
    return page_csrf(client, PAGE)


def _post(client, csrf: str, **form: str):
    data = {"topic": TOPIC, "status": "failed", "csrf_token": csrf, "bulk_action": "requeue",
            "bulk_status": "failed", **form}
    return client.post("/console/messages/bulk", data=data)


def _field(html: str, name: str) -> str:
    match = re.search(rf'data-field="{name}"[^>]*>(.*?)</p>', html, re.S)
    assert match, f"no {name} on the page"
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", match.group(1))).strip()
    return htmllib.unescape(text)


def test_viewer_sees_no_form_and_is_refused(client, broker: Broker) -> None:
    _failed(broker, ["boom"])
    csrf = _signed_in(client, "vera")
    html = client.get(PAGE).text
    assert 'id="bulk"' not in html and "/console/messages/bulk" not in html
    assert _post(client, csrf, do="preview").status_code == 403
    assert _post(client, csrf, do="act").status_code == 403
    assert broker.counts(TOPIC)["failed"] == 1


def test_operator_previews_but_may_not_act(client, broker: Broker) -> None:
    _failed(broker, ["timeout talking to db", "boom", "timeout again"])
    csrf = _signed_in(client, "otto")
    html = client.get(PAGE).text
    assert 'id="bulk"' in html and 'value="preview"' in html and 'value="act"' not in html
    r = _post(client, csrf, do="preview", error="timeout")
    assert r.status_code == 200
    assert _field(r.text, "bulk-preview").startswith("2 messages match")
    assert 'name="error" size="18" maxlength="200" autocomplete="off" value="timeout"' in r.text
    assert _post(client, csrf, do="act", error="timeout").status_code == 403
    assert broker.counts(TOPIC)["failed"] == 3
    _, rows = audit.recent(1, 10, "otto", "forbidden")
    assert rows[0]["target"] == "/console/messages/bulk"


def test_admin_previews_then_requeues_and_it_is_audited(client, broker: Broker) -> None:
    ids = _failed(broker, ["timeout talking to db", "boom", "timeout again"])
    csrf = _signed_in(client, "ada")
    assert 'value="act"' in client.get(PAGE).text
    r = _post(client, csrf, do="preview", error="timeout")
    assert _field(r.text, "bulk-preview").startswith("2 messages match")
    assert broker.counts(TOPIC)["failed"] == 3  # a preview changes nothing
    r = _post(client, csrf, do="act", error="timeout")
    assert r.status_code == 200
    assert _field(r.text, "bulk-done").startswith("requeue: 2 matched, 2 done")
    counts = broker.counts(TOPIC)
    assert (counts["failed"], counts["queued"]) == (1, 2)
    assert broker.get(ids[1]).status == "failed"  # "boom" did not match
    _, rows = audit.recent(1, 10, "ada", "bulk")
    assert rows[0]["target"] == TOPIC and rows[0]["ok"] and rows[0]["reqid"]
    assert rows[0]["detail"] == ('requeue {"error": "timeout", "status": "failed"} '
                                 'matched=2 acted=2 scanned=3 steps=1')


def test_time_range_and_delete(client, broker: Broker) -> None:
    _failed(broker, ["a", "b"])
    csrf = _signed_in(client, "ada")
    later = (dt.datetime.now() + dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S")
    earlier = dt.datetime.fromtimestamp(time.time() - 3600).strftime("%Y-%m-%dT%H:%M")
    r = _post(client, csrf, do="preview", time_from=later)
    assert _field(r.text, "bulk-preview").startswith("0 messages match")
    r = _post(client, csrf, do="preview", time_from=earlier, time_to=later)
    assert _field(r.text, "bulk-preview").startswith("2 messages match")
    r = _post(client, csrf, do="act", bulk_action="delete", time_from=earlier)
    assert _field(r.text, "bulk-done").startswith("delete: 2 matched, 2 done")
    assert broker.counts(TOPIC)["failed"] == 0


def test_cancel_queued(client, broker: Broker) -> None:
    broker.publish(TOPIC, {}, force=True)
    csrf = _signed_in(client, "ada")
    r = _post(client, csrf, do="act", bulk_action="cancel", bulk_status="queued")
    assert _field(r.text, "bulk-done").startswith("cancel: 1 matched, 1 done")
    assert broker.counts(TOPIC)["failed"] == 1


@pytest.mark.parametrize(("form", "why"), [
    ({"bulk_action": "requeue", "bulk_status": "queued"},
     "Bulk action refused: requeue takes status failed or finished, not 'queued'"),
    ({"bulk_action": "cancel", "bulk_status": "failed"},
     "Bulk action refused: cancel takes status queued or delayed"),
    ({"bulk_action": "explode"}, "Bulk action refused: unknown action"),
    ({"bulk_status": "lost"}, "Bulk action refused: requeue takes status"),
    ({"time_from": "yesterday"}, "From: enter a date and time"),
    ({"time_to": "9" * 40}, "To: enter a date and time"),
    ({"time_from": "2030-01-02T00:00", "time_to": "2030-01-01T00:00"},
     "Bulk action refused: since"),
    ({"time_from": "1950-01-01T00:00"}, "Bulk action refused: since must be epoch seconds"),
    ({"error": "x" * 201}, "Bulk action refused: error: at most 200 characters"),
])
@pytest.mark.parametrize("do", ["preview", "act"])
def test_bad_input_is_said_on_the_page(client, broker: Broker, form: dict, why: str,
                                       do: str) -> None:
    _failed(broker, ["boom"])
    csrf = _signed_in(client, "ada")
    r = _post(client, csrf, do=do, **form)
    assert r.status_code == 400 and why in r.headers["x-reason"]
    assert why in _field(r.text, "bulk-error")
    assert broker.counts(TOPIC)["failed"] == 1
    if do == "act":
        _, rows = audit.recent(1, 10, "ada", "bulk")
        assert not rows[0]["ok"] and why in rows[0]["detail"]


def test_bad_topic_and_missing_csrf(client, broker: Broker) -> None:
    _failed(broker, ["boom"])
    csrf = _signed_in(client, "ada")
    assert client.post("/console/messages/bulk", data={
        "topic": "bad topic", "csrf_token": csrf, "do": "act"}).status_code == 400
    assert _post(client, "forged", do="act").status_code == 403
    assert broker.counts(TOPIC)["failed"] == 1


def test_chinese_labels(client, broker: Broker) -> None:
    _failed(broker, ["boom"])
    sign_in(client, "ada")
    client.get("/console/lang/zh?next=/console/")
    csrf = page_csrf(client, PAGE)
    assert "按条件批量操作" in client.get(PAGE).text
    r = _post(client, csrf, do="preview")
    assert _field(r.text, "bulk-preview").startswith("1 条消息匹配")
    r = _post(client, csrf, do="preview", time_from="yesterday")
    assert _field(r.text, "bulk-error") == "起始时间：请填写日期时间"


# -- Act in parts (the form's script): /console/messages/bulk/part ---------------------

@pytest.fixture
def small_parts(app_for):
    """A console whose bulk parts are one step of 2 ids."""
    from butterfly_canghai import users

    app = app_for(CANGHAI_BULK_STEP="2", CANGHAI_BULK_PART_STEPS="1")
    users.add_user("ada", PASSWORD, "admin")
    users.add_user("otto", PASSWORD, "operator")
    return app.test_client()


def _part(client, csrf: str, cursor: str = "", **form: str):
    data = {"topic": TOPIC, "status": "failed", "csrf_token": csrf, "bulk_action": "requeue",
            "bulk_status": "failed", "cursor": cursor, **form}
    return client.post("/console/messages/bulk/part", data=data)


def test_the_page_offers_parts_to_admins_only(client, broker: Broker) -> None:
    _failed(broker, ["boom"])
    _signed_in(client, "ada")
    html = client.get(PAGE).text
    assert 'data-parts="/console/messages/bulk/part"' in html
    assert 'data-field="bulk-progress" hidden' in html
    sign_in(client, "otto")
    html = client.get(PAGE).text
    assert "data-parts" not in html and "bulk-progress" not in html


def test_act_in_parts_acts_as_one_shot_and_audits_each_part(small_parts,
                                                             broker: Broker) -> None:
    client = small_parts
    ids = _failed(broker, ["timeout a", "boom", "timeout b", "timeout c", "boom", "timeout d",
                           "boom"])
    csrf = _signed_in(client, "ada")
    r = _post(client, csrf, do="preview", error="timeout")
    assert 'data-matched="4" data-scanned="7"' in r.text
    parts, cursor = [], ""
    while True:
        r = _part(client, csrf, cursor, error="timeout")
        assert r.status_code == 200, r.headers.get("x-reason")
        body = r.get_json()
        parts.append(body)
        if body["done"]:
            assert body["cursor"] is None
            break
        cursor = body["cursor"]
        assert len(parts) < 20
    assert len(parts) == 4 and [p["part"] for p in parts] == [1, 2, 3, 4]
    assert [p["scanned"] for p in parts] == [2, 2, 2, 1] and all(p["steps"] == 1 for p in parts)
    assert sum(p["acted"] for p in parts) == 4 and len({p["run"] for p in parts}) == 1
    assert [broker.get(i).status for i in ids] == ["queued", "failed", "queued", "queued",
                                                   "failed", "queued", "failed"]
    _, rows = audit.recent(1, 10, "ada", "bulk")
    mine = [r for r in rows if "run=" in r["detail"]]
    assert len(mine) == 4 and all(r["ok"] and r["target"] == TOPIC for r in mine)
    run = parts[0]["run"]
    assert mine[0]["detail"].startswith('requeue {"error": "timeout", "status": "failed"} ')
    assert mine[0]["detail"].endswith(f"run={run} part=4 done")  # newest first
    assert mine[-1]["detail"].endswith(f"run={run} part=1")


@pytest.mark.parametrize(("cursor", "form", "why"), [
    ("!!!", {}, "cursor is malformed"),
    ("eyJ2IjoxfQ", {}, "cursor is malformed"),  # {"v":1}
    ("A" * 3000, {}, "cursor must be"),
    (None, {"error": "other"}, "another bulk run"),  # the first part's cursor, new filter
    (None, {"bulk_action": "delete"}, "another bulk run"),
    (None, {"topic": "/bulk/elsewhere"}, "another bulk run"),
    ("", {"bulk_action": "explode"}, "unknown action"),
    ("", {"time_from": "yesterday"}, "From: enter a date and time"),
    ("", {"topic": "bad topic"}, "bad topic"),
])
def test_a_bad_part_is_a_json_400(small_parts, broker: Broker, cursor, form, why) -> None:
    client = small_parts
    _failed(broker, ["boom"] * 5)
    csrf = _signed_in(client, "ada")
    if cursor is None:
        first = _part(client, csrf).get_json()
        assert first["acted"] == 2 and not first["done"]
        cursor = first["cursor"]
    before = broker.counts(TOPIC)
    r = _part(client, csrf, cursor, **form)
    assert r.status_code == 400 and why in r.headers["x-reason"]
    assert why in r.get_json()["error"]
    assert broker.counts(TOPIC) == before


def test_parts_need_admin_and_csrf_every_time(small_parts, broker: Broker) -> None:
    client = small_parts
    _failed(broker, ["boom"] * 5)
    csrf = _signed_in(client, "ada")
    first = _part(client, csrf).get_json()
    assert first["acted"] == 2
    assert _part(client, "forged", first["cursor"]).status_code == 403
    csrf = _signed_in(client, "otto")  # the same cursor, now as an operator
    assert _part(client, csrf, first["cursor"]).status_code == 403
    assert broker.counts(TOPIC)["failed"] == 3
    _, rows = audit.recent(1, 10, "otto", "forbidden")
    assert rows[0]["target"] == "/console/messages/bulk/part"
