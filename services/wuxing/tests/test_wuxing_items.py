"""Items by id, item_list, history and rollback; both databases."""

import datetime as dt
import time

from wuxing_testlib import make_section

from butterfly_common.testing import wait_until
from butterfly_wuxing import history
from butterfly_wuxing.models import History

WEB1 = {"namespace": "demo", "instance_name": "web1"}


def _setup(api):
    make_section(api)
    for name, port, owner in (("web1", 80, "ann"), ("web2", 8080, "bob"), ("db1", 3306, "ann")):
        api.ok("instance_create", namespace="demo", instance_name=name, section_name="host",
               section_version="v1", items_data={"i|port": port, "s|owner": owner})
    detail = api.ok("instance_get", **WEB1, value_format="detail")["data"]
    return {name: d["item_id"] for name, d in detail.items()}


def test_item_get_and_type_checks(api):
    ids = _setup(api)
    data = api.ok("item_get", item_id=ids["i|port"])["data"]
    assert data["item_value"] == 80 and data["item_type"] == "int" and "u_time" in data
    assert api.ok("item_get", item_id=ids["i|port"], item_type="i")["data"]["item_value"] == 80
    assert api.stat("item_get", item_id=ids["i|port"], item_type="s") \
        == "ERR_ITEM_TYPE_MISMATCH"
    assert api.stat("item_get", item_id=ids["i|port"], item_type="zz") \
        == "ERR_ITEM_TYPE_NOT_FOUND"
    assert api.call("item_get", item_id=999999)[:2] == (404, {"stat": "ERR_ITEM_IS_NOT_FOUND"})


def test_item_update_takes_the_type_from_the_stored_item(api):
    ids = _setup(api)
    # the original wrote into whichever typed column the caller named
    assert api.stat("item_update", item_id=ids["i|port"], item_type="s", item_value="x") \
        == "ERR_ITEM_TYPE_MISMATCH"
    assert api.stat("item_update", item_id=ids["i|port"], item_value="x") \
        == "ERR_ITEM_VALUE_INVALID"
    done = api.ok("item_update", item_id=ids["i|port"], item_value="81")["data"]
    assert done["item_value"] == 81
    assert api.stat("item_update", item_id=ids["i|port"], item_value=82,
                    revision=done["revision"] - 1) == "ERR_ITEM_UPDATE_FAILED"
    assert api.stat("item_update", item_id=ids["i|port"], item_value=82,
                    item_value_old=80) == "ERR_ITEM_UPDATE_FAILED"
    api.ok("item_update", item_id=ids["i|port"], item_value=82, item_value_old=81,
           revision=done["revision"])
    assert api.ok("item_get", item_id=ids["i|port"])["data"]["item_value"] == 82
    assert api.stat("item_update", item_id=999999, item_value=1) == "ERR_ITEM_IS_NOT_FOUND"


def test_item_list_operators_time_and_sort(api):
    _setup(api)
    base = {"namespace": "demo", "item_name": "i|port"}
    rows = api.ok("item_list", **base, item_value_operator=">=", item_value="3306",
                  sort="-item_value")["data"]
    assert [r["instance_name"] for r in rows["list"]] == ["web2", "db1"]
    assert {"item_id", "namespace", "section_name", "instance_name", "item_name", "item_value",
            "user", "c_time", "u_time"} <= rows["list"][0].keys()
    for op, expected in (("=", ["web1"]), ("<", ["web1"]), ("<=", ["web1", "db1"]),
                         (">", ["web2"]), ("!=", ["web2", "db1"])):
        got = api.ok("item_list", **base, item_value_operator=op, item_value=80 if op in
                     ("=", "!=") else 3306 if op == "<=" else 81 if op == "<" else 3306,
                     sort="item_value")["data"]["list"]
        assert sorted(r["instance_name"] for r in got) == sorted(expected), op
    owners = api.ok("item_list", namespace="demo", item_name="s|owner",
                    item_value_operator="=", item_value="ann")["data"]
    assert owners["total"] == 2
    assert api.stat("item_list", **base, item_value_operator="~", item_value=1) \
        == "ERR_ITEM_VALUE_OPERATOR"
    assert api.stat("item_list", namespace="demo", item_value_operator="=", item_value=1) \
        == "ERR_ITEM_VALUE_OPERATOR"
    # an unknown type prefix was a crash in the original
    assert api.stat("item_list", item_name="q|what") == "ERR_SECTION_ITEM_TYPE_INVALID"
    assert api.stat("item_list", start_time="2024-01-01") == "ERR_TIME_FORMATE_INVALID"
    assert api.stat("item_list", sort="item_value") == "ERR_PARAM_IS_INVALID"
    now = dt.datetime.now()
    start = (now - dt.timedelta(hours=1)).strftime("%Y%m%d%H%M%S")
    end = (now + dt.timedelta(hours=1)).strftime("%Y%m%d%H%M%S")
    assert api.ok("item_list", **base, start_time=start, end_time=end)["data"]["total"] == 3
    assert api.ok("item_list", **base, end_time=start)["data"]["total"] == 0
    page = api.ok("item_list", namespace="demo", instance_name="web1", page_size=2,
                  page_index=3, sort="item_name")["data"]
    assert page["total"] == 5 and len(page["list"]) == 1


def test_history_records_every_write_including_deletes(api):
    ids = _setup(api)
    port = ids["i|port"]
    for value in (81, 82):
        api.ok("instance_update_item", **WEB1, item_name="i|port", item_value=value)
    rows = api.ok("item_history_list", item_id=port, item_type="i")["data"]
    assert rows["total"] == 3
    assert [(r["cmd"], r["item_value"]) for r in rows["list"]] == [
        ("update", 82), ("update", 81), ("create", 80)]
    assert rows["list"][0]["item_value_old"] == 81 and rows["list"][0]["revision"] > 0
    assert {"id", "item_id", "item_value", "cmd", "user", "c_time"} <= rows["list"][0].keys()
    assert api.stat("item_history_list", item_id=port, item_type="nope") \
        == "ERR_ITEM_TYPE_NOT_FOUND"
    api.ok("instance_delete", **WEB1)
    rows = api.ok("item_history_list", item_id=port)["data"]["list"]
    assert rows[0]["cmd"] == "delete" and rows[0]["item_value_old"] == 82
    # long strings are refused, never silently cut (the original's 128-char history column)
    assert api.stat("instance_update_item", namespace="demo", instance_name="web2",
                    item_name="s|owner", item_value="x" * 129) == "ERR_ITEM_VALUE_INVALID"


def test_item_and_instance_rollback(api):
    ids = _setup(api)
    first = api.ok("instance_get", **WEB1)["revision"]
    api.ok("instance_update_items", **WEB1, items={"i|port": 1, "s|owner": "zed"})
    mid = api.ok("instance_get", **WEB1)["revision"]
    api.ok("instance_update_item", **WEB1, item_name="i|port", item_value=2)
    done = api.ok("item_rollback", item_id=ids["i|port"], revision=mid)["data"]
    assert done["item_value"] == 1
    assert api.ok("item_history_list", item_id=ids["i|port"])["data"]["list"][0]["cmd"] \
        == "rollback"
    result = api.ok("instance_rollback", **WEB1, revision=first)["data"]
    assert result["items"] == ["i|port", "s|owner"]
    assert api.ok("instance_get", **WEB1, items="i|port,s|owner")["data"] == {
        "i|port": 80, "s|owner": "ann"}
    assert api.stat("instance_rollback", **WEB1, revision=10**9) == "ERR_REVISION_IS_INVALID"
    assert api.stat("item_rollback", item_id=ids["i|port"], revision=1) \
        == "ERR_REVISION_IS_INVALID"  # the item did not exist yet
    assert api.stat("instance_rollback", namespace="demo", instance_name="nope",
                    revision=first) == "ERR_INSTANCE_IS_NOT_EXIST"


def test_retention_compacts_and_refuses_older_revisions(api):
    ids = _setup(api)
    rev = api.ok("namespace_get", namespace="demo")["data"]["revision"]
    api.ok("instance_update_item", **WEB1, item_name="i|port", item_value=81)
    History.update(c_time=dt.datetime.now() - dt.timedelta(days=100)).where(
        History.revision <= rev).execute()
    assert history.prune(90) > 0
    status, body, _ = api.call("watch", namespace="demo", since=rev - 1, timeout=0)
    assert (status, body["stat"]) == (410, "ERR_REVISION_COMPACTED")
    assert body["compact_revision"] == rev
    assert api.stat("item_rollback", item_id=ids["i|port"], revision=rev - 1) \
        == "ERR_REVISION_COMPACTED"
    changes = api.ok("watch", namespace="demo", since=rev, timeout=0)["data"]["changes"]
    assert [c["item_value"] for c in changes] == [81]
    assert api.ok("namespace_get", namespace="demo")["data"]["compact_revision"] == rev


def test_the_pruner_loop_prunes_in_the_background_and_stops_promptly(api):
    _setup(api)
    rev = api.ok("namespace_get", namespace="demo")["data"]["revision"]
    api.ok("instance_update_item", **WEB1, item_name="i|port", item_value=81)
    History.update(c_time=dt.datetime.now() - dt.timedelta(days=100)).where(
        History.revision <= rev).execute()
    stop = history.start_pruner(90, 0.05)
    try:
        wait_until(lambda: api.ok("namespace_get", namespace="demo")["data"]
                   ["compact_revision"] == rev, 10, what="the pruner loop compacts")
    finally:
        started = time.monotonic()
        stop()
        assert time.monotonic() - started < 1.0
    assert History.select().where(History.revision <= rev).count() == 0
