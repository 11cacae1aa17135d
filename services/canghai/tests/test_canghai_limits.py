"""A topic's rate and concurrency limits in the console: the panel on the messages page,
the marker on the queues list, the admin's form (CSRF, role, audit) and its bad input."""

from __future__ import annotations

import re

import pytest
from canghai_helpers import page_csrf, sign_in

from butterfly_canghai import audit, queues
from butterfly_common.mq import Broker

TOPIC = "/lim/topic"
PAGE = f"/console/messages?topic={TOPIC}&status=queued"


def _signed_in(client, name: str) -> str:
    """Sign ``name`` in with English labels; the CSRF token of the topic's page."""
    sign_in(client, name)
    client.get("/console/lang/en?next=/console/")
    return page_csrf(client, PAGE)


def _post(client, csrf: str, **form: str):
    return client.post("/console/messages/limits",
                       data={"topic": TOPIC, "status": "queued", "csrf_token": csrf, **form})


def _field(html: str, name: str) -> str:
    match = re.search(rf'data-field="{name}">(.*?)</(?:dd|p)>', html, re.S)
    assert match, f"no {name} on the page"
    return re.sub(r"<[^>]+>", "", match.group(1)).strip()


def test_viewer_sees_the_panel_without_a_form(client, broker: Broker) -> None:
    broker.publish(TOPIC, {}, force=True)
    _signed_in(client, "vera")
    html = client.get(PAGE).text
    assert 'id="limits"' in html and _field(html, "no_limits") == "No limits"
    assert "/console/messages/limits" not in html
    broker.set_limits(TOPIC, max_running=2, rate=5, rate_window=10, set_by="ops")
    html = client.get(PAGE).text
    assert _field(html, "max_running") == "2 (running now 0)"
    assert _field(html, "rate") == "5 per 10 s (used this window 0)"
    assert _field(html, "set_by").startswith("ops ")
    assert "/console/messages/limits" not in html


def test_admin_sets_shows_and_clears_limits(client, broker: Broker) -> None:
    broker.publish(TOPIC, {}, force=True)
    csrf = _signed_in(client, "ada")
    assert 'name="max_running"' in client.get(PAGE).text
    r = _post(client, csrf, max_running="3", rate="10", rate_window="2.5", action="set")
    assert r.status_code == 302 and "done=limits_saved" in r.headers["Location"]
    got = broker.limits(TOPIC)
    assert (got.max_running, got.rate, got.rate_window, got.set_by) == (3, 10, 2.5, "ada")
    html = client.get(r.headers["Location"]).text
    assert 'data-done="limits_saved"' in html and "Limits saved" in html
    assert _field(html, "max_running") == "3 (running now 0)"
    assert _field(html, "rate") == "10 per 2.5 s (used this window 0)"
    assert _field(html, "set_by").startswith("ada ")
    assert 'name="max_running" inputmode="numeric" size="8" autocomplete="off" value="3"' in html

    _, rows = audit.recent(1, 10, "ada", "limits_set")
    assert rows[0]["target"] == TOPIC and rows[0]["ok"]
    assert rows[0]["detail"] == "max_running=3 rate=10 rate_window=2.5" and rows[0]["reqid"]

    # a rate alone: max_running empty turns that limit off
    assert _post(client, csrf, max_running="", rate="7", rate_window="",
                 action="set").status_code == 302
    got = broker.limits(TOPIC)
    assert (got.max_running, got.rate, got.rate_window) == (None, 7, 1.0)

    # every field empty: no limit left, said and audited as a clear
    r = _post(client, csrf, max_running="", rate="", rate_window="", action="set")
    assert r.status_code == 302 and "done=limits_cleared" in r.headers["Location"]
    assert not broker.limits(TOPIC).limited
    assert audit.recent(1, 10, "ada", "limits_clear")[0] == 1

    broker.set_limits(TOPIC, max_running=1)
    r = _post(client, csrf, action="clear")
    assert r.status_code == 302 and "done=limits_cleared" in r.headers["Location"]
    assert not broker.limits(TOPIC).limited
    html = client.get(r.headers["Location"]).text
    assert "Limits cleared" in html and _field(html, "no_limits") == "No limits"
    _, rows = audit.recent(1, 10, "ada", "limits_clear")
    assert rows[0]["target"] == TOPIC and rows[0]["ok"]


def test_the_panel_counts_running_used_and_held(client, broker: Broker) -> None:
    for i in range(3):
        broker.publish(TOPIC, {"i": i}, force=True)
    broker.set_limits(TOPIC, max_running=1, rate=100, rate_window=60)
    assert len(broker.claim(TOPIC, "w1", 1)) == 1
    assert broker.claim(TOPIC, "w1", 1) == []  # held back: one is running
    _signed_in(client, "vera")
    html = client.get(PAGE).text
    assert _field(html, "max_running") == "1 (running now 1)"
    assert _field(html, "rate") == "100 per 60 s (used this window 1)"
    assert re.fullmatch(r"1 \(last \d{4}-\d\d-\d\d \d\d:\d\d:\d\d\)", _field(html, "held"))


def test_queues_list_marks_limited_topics_in_the_same_read(client, broker: Broker) -> None:
    broker.publish(TOPIC, {}, force=True)
    broker.publish("/lim/free", {}, force=True)
    broker.set_limits(TOPIC, max_running=4, rate=20, rate_window=0.5)
    rows = {r.topic: r for r in queues.topic_counts(broker)}
    assert (rows[TOPIC].max_running, rows[TOPIC].rate, rows[TOPIC].rate_window) == (4, 20, 0.5)
    assert not rows["/lim/free"].limited
    _signed_in(client, "vera")
    html = client.get("/console/queues/rows").text
    marker = re.search(rf'data-limits="{TOPIC}"[^>]*>([^<]*)</a>', html)
    assert marker and marker.group(1) == "max 4 · 20/0.5s"
    assert 'data-limits="/lim/free"' not in html
    assert "<th>Limits</th>" in client.get("/console/queues").text


@pytest.mark.parametrize("name", ["vera", "otto"])
def test_viewer_and_operator_are_refused_server_side(client, broker: Broker, name: str) -> None:
    broker.publish(TOPIC, {}, force=True)
    broker.set_limits(TOPIC, max_running=2)
    csrf = _signed_in(client, name)
    assert _post(client, csrf, max_running="9", action="set").status_code == 403
    assert _post(client, csrf, action="clear").status_code == 403
    assert broker.limits(TOPIC).max_running == 2
    _, rows = audit.recent(1, 10, name, "forbidden")
    assert [r["target"] for r in rows] == ["/console/messages/limits"] * 2


def test_post_without_csrf_is_refused(client, broker: Broker) -> None:
    broker.publish(TOPIC, {}, force=True)
    _signed_in(client, "ada")
    assert _post(client, "forged", max_running="2", action="set").status_code == 403
    assert not broker.limits(TOPIC).limited


@pytest.mark.parametrize(("form", "why"), [
    ({"max_running": "-1"}, "Max running: must be between 1 and 1000000"),
    ({"max_running": "0"}, "Max running: must be between 1 and 1000000"),
    ({"max_running": "1000001"}, "Max running: must be between 1 and 1000000"),
    ({"max_running": "abc"}, "Max running: enter a whole number"),
    ({"max_running": "2.5"}, "Max running: enter a whole number"),
    ({"max_running": "9" * 5000}, "Max running: enter a whole number"),
    ({"rate": "0"}, "Rate: must be between 1 and 1000000"),
    ({"rate": "ten"}, "Rate: enter a whole number"),
    ({"rate": "5", "rate_window": "0"}, "Window: must be 0.001 to 86400 seconds"),
    ({"rate": "5", "rate_window": "-2"}, "Window: must be 0.001 to 86400 seconds"),
    ({"rate": "5", "rate_window": "86401"}, "Window: must be 0.001 to 86400 seconds"),
    ({"rate": "5", "rate_window": "0.0005"}, "Window: must be 0.001 to 86400 seconds"),
    ({"rate": "5", "rate_window": "nan"}, "Window: enter a number of seconds"),
    ({"rate": "5", "rate_window": "inf"}, "Window: enter a number of seconds"),
    ({"rate": "5", "rate_window": "soon"}, "Window: enter a number of seconds"),
    ({"rate_window": "5"}, "A window needs a rate"),
])
def test_bad_input_is_said_on_the_page(client, broker: Broker, form: dict, why: str) -> None:
    broker.publish(TOPIC, {}, force=True)
    broker.set_limits(TOPIC, max_running=2, set_by="ops")
    csrf = _signed_in(client, "ada")
    r = _post(client, csrf, action="set", **form)
    assert r.status_code == 400 and why in r.headers["x-reason"]
    assert why in _field(r.text, "limits-error")
    assert 'id="limits"' in r.text and f"<h2 class=\"mono\">{TOPIC}" in r.text
    for key, value in form.items():  # the form keeps what was typed
        assert f'name="{key}"' in r.text and f'value="{value}"' in r.text
    got = broker.limits(TOPIC)
    assert (got.max_running, got.rate, got.set_by) == (2, None, "ops")
    _, rows = audit.recent(1, 10, "ada", "limits_set")
    assert not rows[0]["ok"] and why in rows[0]["detail"]


def test_bad_topic_or_action_is_a_400(client, broker: Broker) -> None:
    broker.publish(TOPIC, {}, force=True)
    csrf = _signed_in(client, "ada")
    assert client.post("/console/messages/limits", data={
        "topic": "bad topic", "csrf_token": csrf, "max_running": "1"}).status_code == 400
    assert _post(client, csrf, action="explode").status_code == 400
    assert not broker.limits(TOPIC).limited


def test_chinese_labels(client, broker: Broker) -> None:
    broker.publish(TOPIC, {}, force=True)
    sign_in(client, "ada")
    client.get("/console/lang/zh?next=/console/")
    csrf = page_csrf(client, PAGE)
    assert "未设置限流" in client.get(PAGE).text
    r = _post(client, csrf, max_running="0", action="set")
    assert "最大并发：须在 1 到 1000000 之间" in r.text


def test_admin_sets_group_limits_and_sees_group_state(client, broker: Broker) -> None:
    """The group caps go through the same form (and audit) as the topic's; the panel
    shows groups with ready messages, running per group and claims a group cap held."""
    for group in ("acme", "acme", "beta"):
        broker.publish(TOPIC, {}, force=True, group=group)
    csrf = _signed_in(client, "ada")
    r = _post(client, csrf, max_running="", rate="", rate_window="", group_max_running="1",
              group_limits="beta=3\n\n acme = 2 \n", action="set")
    assert r.status_code == 302 and "done=limits_saved" in r.headers["Location"]
    got = broker.limits(TOPIC)
    assert (got.group_max_running, got.group_limits, got.set_by) == (1, {"acme": 2, "beta": 3},
                                                                    "ada")
    _, rows = audit.recent(1, 10, "ada", "limits_set")
    assert rows[0]["detail"].endswith("group_max_running=1 group_limits=acme:2,beta:3")

    broker.set_limits(TOPIC, group_max_running=1, set_by="ops")  # acme capped at 1 now
    assert len(broker.claim(TOPIC, "w1", 3)) == 2  # one of each group; acme's 2nd held
    html = client.get(PAGE).text
    assert _field(html, "group_max_running") == "1"
    assert _field(html, "groups_ready") == "1"
    assert _field(html, "group_running") == "acme=1, beta=1"
    assert re.fullmatch(r"\d+ \(last \d{4}-\d\d-\d\d \d\d:\d\d:\d\d\)",
                        _field(html, "group_held"))
    assert 'name="group_max_running" inputmode="numeric" size="8" autocomplete="off" ' \
           'value="1"' in html

    # overrides shown and refilled in the text area
    broker.set_limits(TOPIC, group_limits={"acme": 4}, set_by="ops")
    html = client.get(PAGE).text
    assert _field(html, "group_limits") == "acme=4"
    assert re.search(r'<textarea name="group_limits"[^>]*>acme=4</textarea>', html)

    # saving the topic's limits keeps nothing the form does not show: empty clears them
    assert _post(client, csrf, max_running="5", action="set").status_code == 302
    got = broker.limits(TOPIC)
    assert (got.max_running, got.group_max_running, got.group_limits) == (5, None, {})


@pytest.mark.parametrize(("form", "why"), [
    ({"group_max_running": "0"}, "Max running per group: must be between 1 and 1000000"),
    ({"group_limits": "acme"}, "Per-group caps: write group=cap: acme"),
    ({"group_limits": "acme=x"}, "Per-group caps: enter a whole number"),
    ({"group_limits": "=3"}, "Per-group caps: write group=cap: =3"),
    ({"group_limits": "bad group=3"}, "Limits not saved: group must be"),
])
def test_bad_group_input_is_said_on_the_page(client, broker: Broker, form: dict,
                                             why: str) -> None:
    broker.publish(TOPIC, {}, force=True)
    broker.set_limits(TOPIC, group_max_running=2, set_by="ops")
    csrf = _signed_in(client, "ada")
    r = _post(client, csrf, action="set", **form)
    assert r.status_code == 400 and why in _field(r.text, "limits-error")
    assert broker.limits(TOPIC).group_max_running == 2


def test_operator_cannot_set_group_limits(client, broker: Broker) -> None:
    broker.publish(TOPIC, {}, force=True)
    csrf = _signed_in(client, "otto")
    assert _post(client, csrf, group_max_running="1", action="set").status_code == 403
    assert not broker.limits(TOPIC).limited
