"""Reviewed publishing: draft -> publish -> release, diff, rollback, approval by a second
person, the audit log; and the direct-write API refused only where review is on. Both
databases, over the real Gateway (identities from a trusted proxy's X-Username/X-Role)."""

from __future__ import annotations

import contextlib
import threading

import pytest
import requests
from wuxing_testlib import TOKEN, Person, make_section, make_two_hosts

from butterfly_common.redis_client import make_redis
from butterfly_common.testing import ButterflyService

NS = "rev"
PROXY = {"BUTTERFLY_TRUSTED_PROXIES": "127.0.0.1"}


def as_(user: str, role: str = "operator") -> dict[str, str]:
    return {"X-Username": user, "X-Role": role}


@pytest.fixture
def rapi(fresh, redis_server, db_url):
    with contextlib.contextmanager(fresh)(redis_server.url, db_url, **PROXY) as api:
        make_two_hosts(api, NS)
        yield api


def _live(api, instance: str = "web1") -> dict:
    return api.ok("instance_get", namespace=NS, instance_name=instance)["data"]


def test_draft_publish_diff_rollback(rapi):
    ann = Person(rapi, "ann")
    admin = Person(rapi, "root", "admin")
    # not reviewed yet: the draft API refuses, direct writes work as always
    status, body, reason = ann.call("draft_set", namespace=NS, instance_name="web1",
                                    items={"i|port": 81})
    assert (status, body["stat"]) == (409, "ERR_NAMESPACE_NOT_REVIEWED") and reason
    assert ann.call("review_set", namespace=NS, review=True)[0] == 403  # admin only
    on = admin.ok("review_set", namespace=NS, review=True)
    base = on["baseline_revision"]
    assert base == rapi.ok("namespace_get", namespace=NS)["data"]["revision"]
    assert admin.ok("review_get", namespace=NS) == {
        "namespace": NS, "review": True, "approval": False, "draft_items": 0,
        "pending": None, "latest_release": base}

    # direct value writes are refused now, with a reason naming the way
    for handler, params in (
            ("instance_update_item", {"namespace": NS, "instance_name": "web1",
                                      "item_name": "i|port", "item_value": 1}),
            ("instance_update_items", {"namespace": NS, "instance_name": "web1",
                                       "items": {"i|port": 1}}),
            ("instance_rollback", {"namespace": NS, "instance_name": "web1",
                                   "revision": base}),
            ("instance_create", {"namespace": NS, "instance_name": "web3",
                                 "section_name": "host", "section_version": "v1",
                                 "items_data": {"i|port": 1}})):
        status, body, reason = ann.call(handler, **params)
        assert (status, body["stat"]) == (409, "ERR_NAMESPACE_REVIEWED"), handler
        assert "draft_set" in reason
    assert _live(rapi)["i|port"] == 80

    # edits go into the draft; readers keep the live value
    got = ann.ok("draft_set", namespace=NS, instance_name="web1",
                 items={"i|port": "81", "s|owner": "ops"})
    assert got == {"instance_name": "web1", "items": {"i|port": 81}, "unchanged": ["s|owner"]}
    ann.ok("draft_set", namespace=NS, instance_name="web2", items={"b|online": False})
    bad = ann.call("draft_set", namespace=NS, instance_name="web2", items={"i|port": "x"})
    assert bad[1]["stat"] == "ERR_ITEM_VALUE_INVALID"
    assert ann.call("draft_set", namespace=NS, instance_name="nope",
                    items={"i|port": 1})[1]["stat"] == "ERR_INSTANCE_IS_NOT_EXIST"
    assert _live(rapi)["i|port"] == 80
    draft = ann.ok("draft_get", namespace=NS)
    assert [(e["instance_name"], e["item_name"], e["item_value"], e["item_value_live"],
             e["user"]) for e in draft["list"]] == [("web1", "i|port", 81, 80, "ann"),
                                                     ("web2", "b|online", False, True, "ann")]
    diff = ann.ok("draft_diff", namespace=NS)
    assert diff["from_revision"] == base
    assert diff["changes"] == [
        {"instance_name": "web1", "item_name": "i|port", "change": "changed",
         "old": 80, "new": 81},
        {"instance_name": "web2", "item_name": "b|online", "change": "changed",
         "old": True, "new": False}]

    # publish: one release = one revision with message and author
    assert ann.call("publish", namespace=NS, message=" ")[1]["stat"] == "ERR_PARAM_IS_INVALID"
    rel = ann.ok("publish", namespace=NS, message="port 81, web2 offline")
    assert (rel["state"], rel["kind"], rel["author"], rel["message"]) == (
        "published", "publish", "ann", "port 81, web2 offline")
    r1 = rel["revision"]
    assert r1 == base + 1 == rapi.ok("namespace_get", namespace=NS)["data"]["revision"]
    assert _live(rapi)["i|port"] == 81 and _live(rapi, "web2")["b|online"] is False
    assert ann.ok("draft_get", namespace=NS)["total"] == 0
    assert ann.call("publish", namespace=NS, message="again")[1]["stat"] == "ERR_DRAFT_EMPTY"
    # the watch feed shows the publish as one revision
    feed = rapi.ok("watch", namespace=NS, since=base, timeout=0)["data"]
    assert {c["revision"] for c in feed["changes"]} == {r1}
    assert sorted((c["instance_name"], c["cmd"]) for c in feed["changes"]
                  if c["kind"] == "item") == [("web1", "publish"), ("web2", "publish")]

    ann.ok("draft_set", namespace=NS, instance_name="web1", items={"i|port": 82})
    r2 = ann.ok("publish", namespace=NS, message="82")["revision"]
    changes = ann.ok("release_diff", namespace=NS, from_revision=base,
                     to_revision=r2)["changes"]
    assert [(c["instance_name"], c["item_name"], c["old"], c["new"]) for c in changes] == [
        ("web1", "i|port", 80, 82), ("web2", "b|online", True, False)]
    assert ann.ok("release_diff", namespace=NS, from_revision=r2,
                  to_revision=r1)["changes"] == [
        {"instance_name": "web1", "item_name": "i|port", "change": "changed",
         "old": 82, "new": 81}]
    assert ann.call("release_diff", namespace=NS, from_revision=r2,
                    to_revision=r2 + 50)[:2] == (404, {"stat": "ERR_RELEASE_NOT_FOUND"})
    values = ann.ok("release_get", namespace=NS, revision=r1)["values"]
    assert values["web1"]["i|port"] == 81 and values["web2"]["i|port"] == 8080

    # rollback is a new release with the old values
    back = ann.ok("release_rollback", namespace=NS, revision=base, message="undo")
    assert (back["kind"], back["rollback_of"], back["state"]) == ("rollback", base,
                                                                  "published")
    assert back["revision"] == r2 + 1
    assert _live(rapi)["i|port"] == 80 and _live(rapi, "web2")["b|online"] is True
    assert ann.call("release_rollback", namespace=NS,
                    revision=base)[1]["stat"] == "ERR_DRAFT_EMPTY"  # nothing differs
    listed = ann.ok("release_list", namespace=NS)["list"]
    assert [r["revision"] for r in listed] == [r2 + 1, r2, r1, base]

    # review off needs an empty draft; then direct writes answer as before
    ann.ok("draft_set", namespace=NS, instance_name="web1", items={"i|port": 90})
    assert admin.call("review_set", namespace=NS,
                      review=False)[1]["stat"] == "ERR_DRAFT_NOT_EMPTY"
    assert ann.ok("draft_discard", namespace=NS, instance_name="web1",
                  items=["i|port"]) == {"removed": 1}
    admin.ok("review_set", namespace=NS, review=False)
    done = ann.ok("instance_update_item", namespace=NS, instance_name="web1",
                  item_name="i|port", item_value=91)
    assert done["item_value"] == 91
    log = ann.ok("review_log", namespace=NS, page_size=50)["list"]
    assert [e["action"] for e in log][::-1] == [
        "settings", "draft_set", "draft_set", "publish", "draft_set", "publish", "rollback",
        "draft_set", "draft_discard", "settings"]
    assert log[0]["user"] == "root" and log[0]["detail"]["review"] is False


def test_approval_needs_a_second_person(rapi):
    ann, bob, cat = Person(rapi, "ann"), Person(rapi, "bob"), Person(rapi, "cat")
    viewer = Person(rapi, "vic", "viewer")
    Person(rapi, "root", "admin").ok("review_set", namespace=NS, review=True, approval=True)
    assert rapi.call("review_set", namespace=NS, review=False,
                     approval=True)[1]["stat"] == "ERR_PARAM_IS_INVALID"
    ann.ok("draft_set", namespace=NS, instance_name="web1", items={"i|port": 81})
    bob.ok("draft_set", namespace=NS, instance_name="web2", items={"i|port": 8081})
    asked = ann.ok("publish", namespace=NS, message="ports")
    assert (asked["state"], asked["revision"], asked["author"]) == ("pending", None, "ann")
    assert _live(rapi)["i|port"] == 80  # nothing published yet
    # the draft is frozen while the request waits; a second request is refused
    assert bob.call("draft_set", namespace=NS, instance_name="web1",
                    items={"i|port": 1})[1]["stat"] == "ERR_PUBLISH_PENDING"
    assert bob.call("publish", namespace=NS,
                    message="x")[1]["stat"] == "ERR_PUBLISH_PENDING"
    # the author and anyone who edited the draft cannot approve; a viewer cannot at all
    for who in (ann, bob):
        status, body, reason = who.call("publish_approve", namespace=NS, comment="lgtm")
        assert (status, body["stat"]) == (403, "ERR_SELF_APPROVAL"), reason
        assert body["authors"] == ["ann", "bob"] and "second person" in reason
    status, body, _ = viewer.call("publish_approve", namespace=NS, comment="lgtm")
    assert (status, body["stat"]) == (403, "ERR_FORBIDDEN")
    assert viewer.call("draft_set", namespace=NS, instance_name="web1",
                       items={"i|port": 1})[0] == 403
    assert cat.call("publish_approve", namespace=NS,
                    comment="")[1]["stat"] == "ERR_PARAM_IS_INVALID"
    done = cat.ok("publish_approve", namespace=NS, comment="checked the ports")
    assert (done["state"], done["author"], done["approver"], done["comment"]) == (
        "published", "ann", "cat", "checked the ports")
    assert _live(rapi)["i|port"] == 81 and _live(rapi, "web2")["i|port"] == 8081
    assert cat.call("publish_approve", namespace=NS,
                    comment="x")[1]["stat"] == "ERR_PUBLISH_NOT_PENDING"

    # a rejected request leaves the draft; a rollback is a request like any other
    ann.ok("draft_set", namespace=NS, instance_name="web1", items={"i|port": 99})
    ann.ok("publish", namespace=NS, message="99")
    rejected = bob.ok("publish_reject", namespace=NS, comment="no: 99 is taken")
    assert (rejected["state"], rejected["approver"]) == ("rejected", "bob")
    assert ann.ok("draft_get", namespace=NS)["total"] == 1
    assert ann.call("release_rollback", namespace=NS,
                    revision=done["revision"])[1]["stat"] == "ERR_DRAFT_NOT_EMPTY"
    ann.ok("draft_discard", namespace=NS)
    baseline = ann.ok("release_list", namespace=NS, state="published")["list"][-1]
    asked = ann.ok("release_rollback", namespace=NS, revision=baseline["revision"])
    assert (asked["state"], asked["kind"]) == ("pending", "rollback")
    assert ann.call("publish_approve", namespace=NS,
                    comment="mine")[1]["stat"] == "ERR_SELF_APPROVAL"
    back = bob.ok("publish_approve", namespace=NS, comment="ok")
    assert back["rollback_of"] == baseline["revision"] and back["approver"] == "bob"
    assert _live(rapi)["i|port"] == 80 and _live(rapi, "web2")["i|port"] == 8080
    actions = [(e["action"], e["user"]) for e in
               ann.ok("review_log", namespace=NS, page_size=50)["list"]][::-1]
    assert actions == [("settings", "root"), ("draft_set", "ann"), ("draft_set", "bob"),
                       ("request", "ann"), ("approve", "cat"), ("draft_set", "ann"),
                       ("request", "ann"), ("reject", "bob"), ("draft_discard", "ann"),
                       ("request", "ann"), ("approve", "bob")]


def test_publish_rechecks_every_value_and_lists_violations(rapi):
    """A draft value that no longer fits (its instance moved to a stricter section version)
    refuses the publish, every violation listed; nothing is applied."""
    admin = Person(rapi, "root", "admin")
    make_section(rapi, ns=NS, version="v2", items={"i|port": 80, "s|owner": "ops",
                                                   "b|online": True, "f|load": 0.5,
                                                   "t|notes": ""},
                 **{"i|port": {"item_max": 1000}, "s|owner": {"item_enum": ["ops", "dev"]}})
    admin.ok("review_set", namespace=NS, review=True)
    admin.ok("draft_set", namespace=NS, instance_name="web1",
             items={"i|port": 5000, "s|owner": "ann"})
    admin.ok("draft_set", namespace=NS, instance_name="web2", items={"f|load": 0.9})
    rapi.ok("instance_update_section", namespace=NS, instance_name="web1",
            section_version="v2")
    status, body, reason = admin.call("publish", namespace=NS, message="m")
    assert (status, body["stat"]) == (400, "ERR_DRAFT_INVALID")
    assert [(v["instance_name"], v["item_name"], v["stat"])
            for v in body["violations"]] == [("web1", "i|port", "ERR_ITEM_VALUE_INVALID"),
                                             ("web1", "s|owner", "ERR_ITEM_VALUE_INVALID")]
    assert "maximum" in reason and "not one of" in reason
    assert _live(rapi, "web2")["f|load"] == 0.5
    assert admin.ok("draft_get", namespace=NS)["total"] == 3


def test_refusals_are_clear(rapi):
    ann = Person(rapi, "ann")
    for handler, params, stat in (
            ("draft_diff", {"namespace": NS}, "ERR_NAMESPACE_NOT_REVIEWED"),
            ("publish", {"namespace": NS, "message": "m"}, "ERR_NAMESPACE_NOT_REVIEWED"),
            ("publish_approve", {"namespace": NS, "comment": "c"},
             "ERR_NAMESPACE_NOT_REVIEWED"),
            ("release_get", {"namespace": NS, "revision": 1}, "ERR_RELEASE_NOT_FOUND"),
            ("release_get", {"namespace": NS, "revision": -1}, "ERR_RELEASE_NOT_FOUND"),
            ("release_list", {"namespace": NS, "state": "odd"}, "ERR_PARAM_IS_INVALID"),
            ("draft_get", {"namespace": "bad ns"}, "ERR_NAMESPACE_IS_INVALID"),
            ("draft_discard", {"namespace": NS, "items": ["i|port"]},
             "ERR_PARAM_IS_INVALID"),
            ("publish", {"namespace": NS, "message": "m" * 1001}, "ERR_PARAM_IS_INVALID")):
        status, body, reason = ann.call(handler, **params)
        assert body["stat"] == stat and 400 <= status < 500 and reason, (handler, body)
    status, body, _ = ann.call("draft_set", namespace=NS, instance_name="web1", items=[1])
    assert status == 400 and body["stat"] != "OK"


def test_review_through_real_processes(redis_server, db_url):
    """gunicorn workers, proxied users: a watcher sees the approved publish as one revision;
    a viewer and the author cannot approve; the original's calls answer as before in a
    namespace that did not opt in."""
    make_redis(redis_server.url).flushall()  # version keys of earlier tests' namespaces
    env = {"BUTTERFLY_REDIS_URL": redis_server.url, "BUTTERFLY_DB_URL": db_url,
           "BUTTERFLY_ADMIN_TOKEN": TOKEN, "BUTTERFLY_TIMEOUT": "600",
           "BUTTERFLY_WORKERS": "2", **PROXY}
    with ButterflyService("wuxing", env) as svc:
        def call(handler: str, user: str, role: str = "operator", **params) -> dict:
            return requests.post(f"{svc.url}/wuxing/{handler}", json=params,
                                 headers=as_(user, role), timeout=30).json()

        def ok(handler: str, user: str = "root", role: str = "admin", **params) -> dict:
            body = call(handler, user, role, **params)
            assert body["stat"] == "OK", (handler, body)
            return body.get("data", {})

        for ns in (NS, "plain"):
            ok("section_create", namespace=ns, section_name="s", section_version="1")
            ok("section_item_add", namespace=ns, section_name="s", section_version="1",
               item_name="i|port", item_default=80)
            ok("section_enable", namespace=ns, section_name="s", section_version="1")
            ok("instance_create", namespace=ns, instance_name="a", section_name="s",
               section_version="1")
        base = ok("review_set", namespace=NS, review=True, approval=True)["baseline_revision"]
        ok("draft_set", "ann", "operator", namespace=NS, instance_name="a",
           items={"i|port": 81})
        ok("publish", "ann", "operator", namespace=NS, message="81")
        seen: list[dict] = []
        watcher = threading.Thread(target=lambda: seen.append(requests.post(
            f"{svc.url}/wuxing/watch", json={"namespace": NS, "since": base, "timeout": 20},
            timeout=60).json()))
        watcher.start()
        assert call("publish_approve", "vic", "viewer", namespace=NS,
                    comment="ok")["stat"] == "ERR_FORBIDDEN"
        assert call("publish_approve", "ann", namespace=NS,
                    comment="ok")["stat"] == "ERR_SELF_APPROVAL"
        done = ok("publish_approve", "bob", "operator", namespace=NS, comment="ok")
        watcher.join(30)
        assert not watcher.is_alive()
        changes = seen[0]["data"]["changes"]
        assert [(c["revision"], c["cmd"], c["item_value"]) for c in changes] == [
            (done["revision"], "publish", 81)]
        assert ok("instance_get", namespace=NS, instance_name="a") == {"i|port": 81}
        # the namespace that did not opt in: the original calls, answered as before
        got = requests.get(f"{svc.url}/wuxing/instance_update_item", params={
            "namespace": "plain", "instance_name": "a", "item_name": "i|port",
            "item_value": "82"}, headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=30).json()
        assert got["stat"] == "OK" and got["data"]["item_value"] == 82
        assert set(got["data"]) == {"revision", "item_id", "item_value"}
        assert ok("instance_get", namespace="plain", instance_name="a") == {"i|port": 82}


def test_no_direct_write_slips_past_the_switch_to_review(redis_server, db_url):
    """Writers hammer direct writes through gunicorn while review is turned on: every write
    that succeeded has a revision below the baseline release, every one after is refused,
    and the baseline holds the last directly written values."""
    make_redis(redis_server.url).flushall()
    env = {"BUTTERFLY_REDIS_URL": redis_server.url, "BUTTERFLY_DB_URL": db_url,
           "BUTTERFLY_ADMIN_TOKEN": TOKEN, "BUTTERFLY_TIMEOUT": "600",
           "BUTTERFLY_WORKERS": "2", "BUTTERFLY_THREADS": "4"}
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with ButterflyService("wuxing", env) as svc:
        def call(handler: str, **params) -> dict:
            return requests.post(f"{svc.url}/wuxing/{handler}", json=params, headers=auth,
                                 timeout=60).json()

        call("section_create", namespace=NS, section_name="s", section_version="1")
        call("section_item_add", namespace=NS, section_name="s", section_version="1",
             item_name="i|n", item_default=0)
        call("section_enable", namespace=NS, section_name="s", section_version="1")
        for w in range(4):
            assert call("instance_create", namespace=NS, instance_name=f"w{w}",
                        section_name="s", section_version="1")["stat"] == "OK"
        answers: dict[int, list[dict]] = {w: [] for w in range(4)}
        started = threading.Event()

        def writer(w: int) -> None:
            for n in range(1, 10_000):
                body = call("instance_update_item", namespace=NS, instance_name=f"w{w}",
                            item_name="i|n", item_value=n)
                answers[w].append(body)
                if n == 5:
                    started.set()
                if body["stat"] != "OK":
                    return

        threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
        for t in threads:
            t.start()
        assert started.wait(60)
        body = call("review_set", namespace=NS, review=True)
        assert body["stat"] == "OK", body
        baseline = body["data"]["baseline_revision"]
        for t in threads:
            t.join(120)
        assert not any(t.is_alive() for t in threads)
        release = call("release_get", namespace=NS, revision=baseline)["data"]["values"]
        for w, got in answers.items():
            *done, last = got
            assert last["stat"] == "ERR_NAMESPACE_REVIEWED", last
            assert all(b["stat"] == "OK" and b["data"]["revision"] <= baseline for b in done)
            assert done, "each writer wrote before the switch"
            # the baseline holds exactly the last value each writer got answered
            assert release[f"w{w}"]["i|n"] == done[-1]["data"]["item_value"]
        assert call("namespace_get", namespace=NS)["data"]["revision"] == baseline
