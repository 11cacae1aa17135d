"""Gray releases: rules by client name, label and IP range; several at once up to the
limit; promote and abort; promote through approval; clients' reports of what they applied
or rejected, counted per release and forgotten after the TTL. Both databases, over the real
Gateway (callers behind a trusted proxy, so X-Real-IP sets a client's IP); the same with
client processes in test_wuxing_gray_processes.py."""

from __future__ import annotations

import contextlib

import pytest
from wuxing_testlib import Person, make_section, make_two_hosts

from butterfly_common.testing import wait_until
from butterfly_wuxing.gray import GRAY_MAX

NS = "gray"
PROXY = {"BUTTERFLY_TRUSTED_PROXIES": "127.0.0.1"}


@pytest.fixture
def gapi(fresh, redis_server, db_url):
    with contextlib.contextmanager(fresh)(redis_server.url, db_url, **PROXY) as api:
        make_two_hosts(api, NS)
        Person(api, "root", "admin").ok("review_set", namespace=NS, review=True)
        yield api


def _run(api, client: str | None = None, labels: list[str] | None = None,
         ip: str | None = None) -> tuple[int | None, int]:
    """(gray_id, web1's port) of what ``client`` should run."""
    data = Person(api, role=None, ip=ip).ok("client_config", namespace=NS, client=client,
                                            labels=labels)
    return data["gray_id"], data["values"]["web1"]["i|port"]


def test_gray_release_rules_promote_abort(gapi):
    ann, bob = Person(gapi, "ann"), Person(gapi, "bob")
    base = ann.ok("review_get", namespace=NS)["latest_release"]
    ann.ok("draft_set", namespace=NS, instance_name="web1", items={"i|port": 81})
    one = ann.ok("gray_create", namespace=NS, labels=["canary"], clients=["named-1"],
                 ips=["10.1.0.0/16"], message="port 81 first")
    assert (one["state"], one["source"], one["author"], one["base_revision"]) == (
        "active", "draft", "ann", base)
    assert one["rule"] == {"clients": ["named-1"], "labels": ["canary"],
                           "ips": ["10.1.0.0/16"]}
    assert one["overrides"] == {"web1": {"i|port": 81}}
    assert ann.ok("draft_get", namespace=NS)["total"] == 0  # the draft went into it
    # the main release did not change: no new release, live values as before
    assert gapi.ok("instance_get", namespace=NS, instance_name="web1")["data"]["i|port"] == 80
    assert ann.ok("review_get", namespace=NS)["latest_release"] == base

    # a second one, from the draft again, for another label and range (both via a comma list)
    ann.ok("draft_set", namespace=NS, instance_name="web1", items={"i|port": 82})
    two = ann.ok("gray_create", namespace=NS, labels="zone=eu,zone=us", ips="10.2.0.0/16")
    assert two["rule"]["labels"] == ["zone=eu", "zone=us"]
    expected = {
        ("plain", (), None): (None, 80),
        ("c1", ("canary",), None): (one["id"], 81),
        ("named-1", (), None): (one["id"], 81),
        ("c2", (), "10.1.200.7"): (one["id"], 81),
        ("c3", ("zone=eu",), None): (two["id"], 82),
        ("c4", ("x",), "10.2.0.1"): (two["id"], 82),
        ("c5", ("canary", "zone=us"), None): (two["id"], 82),  # both match: the newest
        ("c6", ("Canary",), "10.3.0.1"): (None, 80),  # labels are case-sensitive
        (None, ("canary",), None): (one["id"], 81),   # anonymous, by label alone
    }
    for (client, labels, ip), want in expected.items():
        assert _run(gapi, client, list(labels), ip) == want, (client, labels, ip)
    assert [g["id"] for g in ann.ok("gray_list", namespace=NS, state="active")["list"]] == [
        two["id"], one["id"]]
    # the main values of other instances come along untouched
    data = Person(gapi, role=None).ok("client_config", namespace=NS, labels=["canary"])
    assert data["values"]["web2"]["i|port"] == 8080 and data["revision"] == base

    # abort: its clients fall back to the main release
    ann.ok("gray_abort", namespace=NS, gray_id=two["id"], comment="not yet")
    assert _run(gapi, "c3", ["zone=eu"]) == (None, 80)
    assert _run(gapi, "c5", ["canary", "zone=us"]) == (one["id"], 81)
    assert ann.stat("gray_abort", namespace=NS, gray_id=two["id"]) == (
        409, "ERR_GRAY_NOT_ACTIVE")
    assert ann.stat("gray_promote", namespace=NS, gray_id=two["id"]) == (
        409, "ERR_GRAY_NOT_ACTIVE")

    # promote: a main release for everyone
    promoted = bob.ok("gray_promote", namespace=NS, gray_id=one["id"])
    assert (promoted["state"], promoted["closed_by"]) == ("promoted", "bob")
    assert promoted["revision"] == ann.ok("review_get", namespace=NS)["latest_release"] > base
    release = ann.ok("release_get", namespace=NS, revision=promoted["revision"])
    assert (release["kind"], release["author"], release["values"]["web1"]["i|port"]) == (
        "promote", "bob", 81)
    for (client, labels, ip) in expected:
        assert _run(gapi, client, list(labels), ip) == (None, 81)
    assert ann.ok("gray_list", namespace=NS, state="active")["total"] == 0
    log = [e["action"] for e in ann.ok("review_log", namespace=NS, page_size=50)["list"]]
    assert log[:3] == ["gray_promote", "gray_abort", "gray_create"]
    # each step woke watchers: a history row of kind gray
    feed = gapi.ok("watch", namespace=NS, since=base, timeout=0)["data"]["changes"]
    assert [c["cmd"] for c in feed if c["kind"] == "gray"] == [
        "gray_create", "gray_create", "gray_abort", "gray_promote"]

    # a gray release of an older release: the values in which it differs from the live ones
    back = ann.ok("gray_create", namespace=NS, revision=base, clients=["c9"])
    assert (back["source"], back["source_revision"], back["overrides"]) == (
        "release", base, {"web1": {"i|port": 80}})
    assert _run(gapi, "c9") == (back["id"], 80) and _run(gapi, "c8") == (None, 81)
    assert ann.stat("gray_create", namespace=NS, revision=promoted["revision"],
                    clients=["c9"]) == (409, "ERR_DRAFT_EMPTY")  # nothing differs
    # review cannot be turned off while one runs
    assert Person(gapi, "root", "admin").stat("review_set", namespace=NS,
                                              review=False) == (409, "ERR_GRAY_ACTIVE")


def test_gray_limit_and_refusals(gapi):
    ann = Person(gapi, "ann")
    made = []
    for n in range(GRAY_MAX):
        ann.ok("draft_set", namespace=NS, instance_name="web2", items={"i|port": 9000 + n})
        made.append(ann.ok("gray_create", namespace=NS, clients=[f"c{n}"])["id"])
    ann.ok("draft_set", namespace=NS, instance_name="web2", items={"i|port": 9999})
    status, body, reason = ann.call("gray_create", namespace=NS, clients=["late"])
    assert (status, body["stat"], body["limit"]) == (409, "ERR_GRAY_LIMIT", GRAY_MAX)
    assert "at most 10" in reason
    assert ann.ok("draft_get", namespace=NS)["total"] == 1  # the refused one kept its draft
    assert ann.ok("gray_list", namespace=NS, page_size=50)["limit"] == GRAY_MAX
    ann.ok("gray_abort", namespace=NS, gray_id=made[0])
    ann.ok("gray_create", namespace=NS, clients=["late"])  # room again
    # each client gets its own one
    for n in range(1, GRAY_MAX):
        data = Person(gapi, role=None).ok("client_config", namespace=NS, client=f"c{n}")
        assert (data["gray_id"], data["values"]["web2"]["i|port"]) == (made[n], 9000 + n)
    ann.ok("gray_abort", namespace=NS, gray_id=made[-1])  # room for the refusals below
    viewer = Person(gapi, "vic", "viewer")
    ann.ok("draft_set", namespace=NS, instance_name="web1", items={"i|port": 1})
    for who, handler, params, want in (
            (viewer, "gray_create", {"clients": ["a"]}, (403, "ERR_FORBIDDEN")),
            (viewer, "gray_abort", {"gray_id": made[1]}, (403, "ERR_FORBIDDEN")),
            (viewer, "gray_promote", {"gray_id": made[1]}, (403, "ERR_FORBIDDEN")),
            (ann, "gray_create", {}, (400, "ERR_PARAM_IS_INVALID")),  # no rule
            (ann, "gray_create", {"ips": ["10.0.0.0/33"]}, (400, "ERR_PARAM_IS_INVALID")),
            (ann, "gray_create", {"ips": ["nope"]}, (400, "ERR_PARAM_IS_INVALID")),
            (ann, "gray_create", {"labels": ["a b"]}, (400, "ERR_PARAM_IS_INVALID")),
            (ann, "gray_create", {"labels": ["x" * 65]}, (400, "ERR_PARAM_IS_INVALID")),
            (ann, "gray_create", {"clients": [f"c{n}" for n in range(101)]},
             (400, "ERR_PARAM_IS_INVALID")),
            (ann, "gray_create", {"clients": ["a"], "revision": 10**6},
             (404, "ERR_RELEASE_NOT_FOUND")),
            (ann, "gray_create", {"clients": ["a"], "revision": -1},
             (404, "ERR_RELEASE_NOT_FOUND")),
            (ann, "gray_promote", {"gray_id": 10**9}, (404, "ERR_GRAY_NOT_FOUND")),
            (ann, "gray_promote", {"gray_id": -5}, (404, "ERR_GRAY_NOT_FOUND")),
            (ann, "gray_get", {"gray_id": 10**9}, (404, "ERR_GRAY_NOT_FOUND")),
            (ann, "gray_list", {"state": "odd"}, (400, "ERR_PARAM_IS_INVALID")),
            (ann, "client_config", {"client": "a b"}, (400, "ERR_PARAM_IS_INVALID")),
            (ann, "client_config", {"labels": [f"l{n}" for n in range(21)]},
             (400, "ERR_PARAM_IS_INVALID")),
            # promote needs an empty draft (web1 has an entry)
            (ann, "gray_promote", {"gray_id": made[1]}, (409, "ERR_DRAFT_NOT_EMPTY"))):
        assert who.stat(handler, namespace=NS, **params) == want, (handler, params)
    # a request for a gray release needs a place too: approving it never exceeds the limit
    ann.ok("gray_create", namespace=NS, clients=["x"])  # the tenth (web1 = 1)
    Person(gapi, "root", "admin").ok("review_set", namespace=NS, review=True, approval=True)
    ann.ok("draft_set", namespace=NS, instance_name="web1", items={"i|port": 2})
    assert ann.stat("gray_create", namespace=NS, clients=["y"]) == (409, "ERR_GRAY_LIMIT")
    assert ann.ok("review_get", namespace=NS)["pending"] is None
    # a namespace without reviewed publishing has no gray releases
    make_section(gapi, ns="plain")
    assert ann.stat("gray_create", namespace="plain", clients=["a"]) == (
        409, "ERR_NAMESPACE_NOT_REVIEWED")


def test_promote_with_approval_is_a_request(gapi):
    ann, bob = Person(gapi, "ann"), Person(gapi, "bob")
    Person(gapi, "root", "admin").ok("review_set", namespace=NS, review=True, approval=True)
    ann.ok("draft_set", namespace=NS, instance_name="web1", items={"i|port": 81})
    gray = ann.ok("gray_create", namespace=NS, labels=["canary"])
    assert gray["state"] == "pending"
    bob.ok("publish_approve", namespace=NS, comment="canaries only")
    asked = ann.ok("gray_promote", namespace=NS, gray_id=gray["id"], message="81 for all")
    assert asked["state"] == "promoting" and asked["request"]
    assert _run(gapi, "c", ["canary"]) == (gray["id"], 81)  # still served as gray
    assert _run(gapi, "d") == (None, 80)
    assert ann.stat("gray_abort", namespace=NS, gray_id=gray["id"]) == (
        409, "ERR_PUBLISH_PENDING")
    assert ann.stat("publish_approve", namespace=NS, comment="mine") == (
        403, "ERR_SELF_APPROVAL")
    # rejected: it runs on as a gray release; asked again and approved: promoted
    bob.ok("publish_reject", namespace=NS, comment="wait")
    assert ann.ok("gray_get", namespace=NS, gray_id=gray["id"])["state"] == "active"
    ann.ok("draft_discard", namespace=NS)
    ann.ok("gray_promote", namespace=NS, gray_id=gray["id"])
    done = bob.ok("publish_approve", namespace=NS, comment="ok")
    assert (done["kind"], done["author"], done["approver"]) == ("promote", "ann", "bob")
    got = ann.ok("gray_get", namespace=NS, gray_id=gray["id"])
    assert (got["state"], got["revision"]) == ("promoted", done["revision"])
    assert _run(gapi, "c", ["canary"]) == (None, 81) and _run(gapi, "d") == (None, 81)


def test_gray_create_with_approval_is_a_request(gapi):
    """With approval on, nobody alone sends values to clients: a gray release waits,
    served to nobody, until a second person approves it; a rejected one is never served."""
    ann, bob, carl = Person(gapi, "ann"), Person(gapi, "bob"), Person(gapi, "carl")
    viewer, root = Person(gapi, "vic", "viewer"), Person(gapi, "root", "admin")
    root.ok("review_set", namespace=NS, review=True, approval=True)
    base = ann.ok("review_get", namespace=NS)["latest_release"]
    since = gapi.ok("namespace_get", namespace=NS)["data"]["revision"]
    carl.ok("draft_set", namespace=NS, instance_name="web2", items={"i|port": 8081})
    ann.ok("draft_set", namespace=NS, instance_name="web1", items={"i|port": 81})
    asked = ann.ok("gray_create", namespace=NS, labels=["canary"], clients=["c1"],
                   message="81 on the canaries")
    assert (asked["state"], asked["author"]) == ("pending", "ann") and asked["request"]
    assert asked["overrides"] == {"web1": {"i|port": 81}, "web2": {"i|port": 8081}}
    pending = ann.ok("review_get", namespace=NS)["pending"]
    assert (pending["id"], pending["kind"], pending["author"]) == (
        asked["request"], "gray", "ann")
    # a pending gray release reaches no client and wakes no watcher (no revision taken)
    for client, labels, ip in (("c1", [], None), ("c2", ["canary"], None),
                               ("c3", [], "10.0.0.1"), (None, ["canary"], None)):
        assert _run(gapi, client, labels, ip) == (None, 80), client
    assert gapi.ok("namespace_get", namespace=NS)["data"]["revision"] == since
    # the draft is frozen until then; nothing else is published or grayed meanwhile
    assert ann.ok("draft_get", namespace=NS)["total"] == 2
    assert ann.stat("draft_set", namespace=NS, instance_name="web1",
                    items={"i|port": 9}) == (409, "ERR_PUBLISH_PENDING")
    assert bob.stat("gray_create", namespace=NS, revision=base, clients=["z"]) == (
        409, "ERR_PUBLISH_PENDING")
    for handler in ("gray_promote", "gray_abort"):
        assert ann.stat(handler, namespace=NS, gray_id=asked["id"]) == (
            409, "ERR_PUBLISH_PENDING"), handler
    assert [g["id"] for g in ann.ok("gray_list", namespace=NS, state="pending")["list"]] == [
        asked["id"]]
    # its author, an editor of its draft and a viewer may not approve it
    status, body, _ = ann.call("publish_approve", namespace=NS, comment="mine")
    assert (status, body["stat"], body["authors"]) == (403, "ERR_SELF_APPROVAL",
                                                        ["ann", "carl"])
    assert carl.stat("publish_approve", namespace=NS, comment="I drafted web2") == (
        403, "ERR_SELF_APPROVAL")
    assert viewer.stat("publish_approve", namespace=NS, comment="me") == (
        403, "ERR_FORBIDDEN")
    assert viewer.stat("publish_reject", namespace=NS, comment="me") == (
        403, "ERR_FORBIDDEN")
    assert ann.ok("gray_get", namespace=NS, gray_id=asked["id"])["state"] == "pending"
    assert _run(gapi, "c1") == (None, 80)

    # approved by a second person: exactly its clients get it, from a new revision on
    done = bob.ok("publish_approve", namespace=NS, comment="canaries ok")
    assert (done["kind"], done["state"], done["author"], done["approver"], done["gray_id"],
            done["revision"]) == ("gray", "approved", "ann", "bob", asked["id"], None)
    got = ann.ok("gray_get", namespace=NS, gray_id=asked["id"])
    assert (got["state"], got["request"], got["author"]) == ("active", None, "ann")
    assert ann.ok("draft_get", namespace=NS)["total"] == 0  # the draft went into it
    assert ann.ok("review_get", namespace=NS)["latest_release"] == base  # no main release
    for client, labels, ip, want in (
            ("c1", [], None, (asked["id"], 81)), ("c2", ["canary"], None, (asked["id"], 81)),
            (None, ["canary"], "10.0.0.1", (asked["id"], 81)), ("c3", [], None, (None, 80)),
            ("c4", ["Canary"], "10.0.0.1", (None, 80)), (None, [], None, (None, 80))):
        assert _run(gapi, client, labels, ip) == want, (client, labels, ip)
    data = Person(gapi, role=None).ok("client_config", namespace=NS, client="c1")
    assert data["values"]["web2"]["i|port"] == 8081 and data["revision"] == base
    feed = gapi.ok("watch", namespace=NS, since=since, timeout=0)["data"]["changes"]
    assert [(c["kind"], c["cmd"]) for c in feed] == [("gray", "gray_approve")]

    # a wide rule, rejected: it never reaches anyone; its draft stays, editable again
    ann.ok("draft_discard", namespace=NS)
    ann.ok("draft_set", namespace=NS, instance_name="web1", items={"i|port": 99})
    wide = ann.ok("gray_create", namespace=NS, ips=["0.0.0.0/0", "::/0"])
    assert wide["state"] == "pending"
    assert _run(gapi, "c9", [], "10.9.9.9") == (None, 80)
    assert _run(gapi, "c1") == (asked["id"], 81)
    no = carl.ok("publish_reject", namespace=NS, comment="far too wide")
    assert (no["kind"], no["state"], no["approver"], no["gray_id"]) == (
        "gray", "rejected", "carl", wide["id"])
    got = ann.ok("gray_get", namespace=NS, gray_id=wide["id"])
    assert (got["state"], got["closed_by"], got["request"]) == ("rejected", "carl", None)
    assert ann.stat("publish_approve", namespace=NS, comment="late") == (
        409, "ERR_PUBLISH_NOT_PENDING")
    for ip in ("10.9.9.9", "192.168.1.1", "2001:db8::1"):
        assert _run(gapi, "c9", [], ip) == (None, 80), ip
    assert ann.stat("gray_abort", namespace=NS, gray_id=wide["id"]) == (
        409, "ERR_GRAY_NOT_ACTIVE")
    assert ann.ok("draft_get", namespace=NS)["total"] == 1
    ann.ok("draft_set", namespace=NS, instance_name="web1", items={"i|port": 98})
    assert [g["id"] for g in ann.ok("gray_list", namespace=NS, state="rejected")["list"]] == [
        wide["id"]]
    assert [r["state"] for r in ann.ok("release_list", namespace=NS, state="approved")[
        "list"]] == ["approved"]
    log = ann.ok("review_log", namespace=NS, page_size=50)["list"]
    steps = [(e["action"], e["user"], e["detail"].get("kind"), e["detail"].get("gray_id"))
             for e in log if e["action"] in ("request", "approve", "reject")]
    assert steps == [("reject", "carl", "gray", wide["id"]),
                     ("request", "ann", "gray", wide["id"]),
                     ("approve", "bob", "gray", asked["id"]),
                     ("request", "ann", "gray", asked["id"])]
    # a gray release of an older release, asked by bob: ann may approve it (not her draft)
    ann.ok("draft_set", namespace=NS, instance_name="web1", items={"i|port": 85})
    ann.ok("publish", namespace=NS, message="85")
    bob.ok("publish_approve", namespace=NS, comment="ok")
    assert _run(gapi, "c7") == (None, 85)
    back = bob.ok("gray_create", namespace=NS, revision=base, clients=["c7"])
    assert back["state"] == "pending" and _run(gapi, "c7") == (None, 85)
    ann.ok("publish_approve", namespace=NS, comment="ok")
    assert _run(gapi, "c7") == (back["id"], 80) and _run(gapi, "c1") == (asked["id"], 81)
    assert _run(gapi, "c8") == (None, 85)


def test_client_reports_are_counted_bounded_and_listed(gapi):
    ann = Person(gapi, "ann")
    base = ann.ok("review_get", namespace=NS)["latest_release"]
    ann.ok("draft_set", namespace=NS, instance_name="web1", items={"i|port": 81})
    gray = ann.ok("gray_create", namespace=NS, labels=["canary"])["id"]
    client = Person(gapi, role=None, ip="10.7.0.1")
    for name in ("a1", "a2", "a3"):
        client.ok("client_report", namespace=NS, client=name, status="applied",
                  revision=base, labels=["canary"], gray_id=gray)
    client.ok("client_report", namespace=NS, client="m1", status="applied", revision=base)
    # m2 ran the main release, then rejected the gray one: it still runs the main one
    client.ok("client_report", namespace=NS, client="m2", status="applied", revision=base)
    rejected = client.ok("client_report", namespace=NS, client="m2", status="rejected",
                         revision=base, gray_id=gray, error="port 81: " + "x" * 5000)
    assert rejected["running"] == {"revision": base, "gray_id": None}
    assert rejected["last_report"]["status"] == "rejected"
    assert len(rejected["last_report"]["error"]) == 1000 and rejected["ip"] == "10.7.0.1"
    stats = ann.ok("client_stats", namespace=NS)
    assert stats["clients"] == 5 and stats["releases"] == [
        {"revision": base, "gray_id": None, "applied": 2, "rejected": 0},
        {"revision": base, "gray_id": gray, "applied": 3, "rejected": 1}]
    assert ann.ok("gray_get", namespace=NS, gray_id=gray)["clients"] == {"applied": 3,
                                                                         "rejected": 1}
    on_gray = ann.ok("client_list", namespace=NS, gray_id=gray)
    assert [c["client"] for c in on_gray["list"]] == ["a1", "a2", "a3"]
    assert on_gray["list"][0]["labels"] == ["canary"]
    assert [c["client"] for c in ann.ok("client_list", namespace=NS,
                                        gray_id=0)["list"]] == ["m1", "m2"]
    assert [c["client"] for c in ann.ok("client_list", namespace=NS,
                                        status="rejected")["list"]] == ["m2"]
    for params, want in (
            ({"client": "x" * 129, "status": "applied", "revision": base},
             (400, "ERR_PARAM_IS_INVALID")),
            ({"client": "a", "status": "maybe", "revision": base},
             (400, "ERR_PARAM_IS_INVALID")),
            ({"client": "a", "status": "applied", "revision": base,
              "labels": [f"l{n}" for n in range(21)]}, (400, "ERR_PARAM_IS_INVALID")),
            ({"client": "a", "status": "applied", "revision": 10**9},
             (404, "ERR_RELEASE_NOT_FOUND")),
            ({"client": "a", "status": "applied", "revision": base, "gray_id": 10**9},
             (404, "ERR_GRAY_NOT_FOUND")),
            ({"client": "a", "status": "applied", "revision": -1},
             (404, "ERR_RELEASE_NOT_FOUND"))):
        assert client.stat("client_report", namespace=NS, **params) == want, params
    assert client.stat("client_report", namespace="nowhere", client="a", status="applied",
                       revision=0) == (400, "ERR_NAMESPACE_IS_INVALID")
    assert ann.stat("client_list", namespace=NS, status="odd") == (
        400, "ERR_PARAM_IS_INVALID")


def test_client_entries_expire_after_the_ttl(fresh, redis_server, sqlite_url):
    with contextlib.contextmanager(fresh)(redis_server.url, sqlite_url,
                                          WUXING_CLIENT_TTL="1", **PROXY) as api:
        make_section(api, ns=NS)
        api.ok("client_report", namespace=NS, client="old", status="applied", revision=1)
        assert api.ok("client_list", namespace=NS)["data"]["total"] == 1
        wait_until(lambda: api.ok("client_list", namespace=NS)["data"]["total"] == 0, 10,
                   what="the report expired")
        assert api.ok("client_stats", namespace=NS)["data"]["releases"] == []
        # the expired row is deleted when a new client first reports
        api.ok("client_report", namespace=NS, client="new", status="applied", revision=1)
        from butterfly_common import db
        from butterfly_wuxing.models import ClientReport
        with db.database.connection_context():
            assert [r.client for r in ClientReport.select()] == ["new"]
