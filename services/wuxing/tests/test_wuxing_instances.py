"""Instances: create, get, update (CAS), several items, upgrade, delete, list; both DBs."""

from wuxing_testlib import make_section

from butterfly_common import db
from butterfly_wuxing import cache
from butterfly_wuxing.models import Instance, Item

NS = {"namespace": "demo"}
WEB1 = {"namespace": "demo", "instance_name": "web1"}


def _instance(api, name="web1", version="v1", **items):
    api.ok("instance_create", namespace="demo", instance_name=name, section_name="host",
           section_version=version, items_data=items or None)


def test_create_errors(api):
    make_section(api, enable=False)
    assert api.stat("instance_create", **WEB1, section_name="host", section_version="v1") \
        == "ERR_SECTION_IS_NOT_ENABLED"
    assert api.stat("instance_create", **WEB1, section_name="nope", section_version="v1") \
        == "ERR_SECTION_IS_NOT_EXIST"
    api.ok("section_enable", namespace="demo", section_name="host", section_version="v1")
    assert api.stat("instance_create", namespace="demo", instance_name="a b",
                    section_name="host", section_version="v1") == "ERR_INSTANCE_NAME_IS_INVALID"
    assert api.stat("instance_create", **WEB1, section_name="host", section_version="v1",
                    items_data={"i|nope": 1}) == "ERR_ITEM_IS_NOT_EXIST"
    assert api.stat("instance_create", **WEB1, section_name="host", section_version="v1",
                    items_data={"i|port": "x"}) == "ERR_ITEM_VALUE_INVALID"
    _instance(api)
    assert api.stat("instance_create", **WEB1, section_name="host", section_version="v1") \
        == "ERR_INSTANCE_IS_EXIST"
    assert Item.select().count() == 5


def test_get_simple_detail_and_items_filter(api):
    make_section(api)
    _instance(api, **{"i|port": "8080", "b|online": "false"})
    body = api.ok("instance_get", **WEB1)
    assert body["data"]["i|port"] == 8080 and body["data"]["b|online"] is False
    assert body["revision"] > 0
    data = api.ok("instance_get", **WEB1, items="i|port,s|owner,i|unknown")["data"]
    assert data == {"i|port": 8080, "s|owner": "ops"}
    detail = api.ok("instance_get", **WEB1, value_format="detail", items=["i|port"])["data"]
    port = detail["i|port"]
    assert {"item_id", "item_name", "item_type", "item_description", "item_value",
            "u_time", "revision"} <= port.keys()
    assert port["item_type"] == "int" and port["item_description"] == "the i|port"
    assert api.call("instance_get", namespace="demo", instance_name="nope")[:2] \
        == (404, {"stat": "ERR_INSTANCE_IS_NOT_EXIST"})
    assert api.stat("instance_get", **WEB1, value_format="fancy") == "ERR_PARAM_IS_INVALID"
    # no API changes is_valid (as in the original): set it behind the API's back and move
    # the namespace version on, as a write would, so the cache cannot hide it
    Instance.update(is_valid=False).execute()
    cache.advance("demo", 10_000)
    assert api.stat("instance_get", **WEB1) == "ERR_INSTANCE_IS_NOT_VALID"


def test_get_survives_a_missing_item_row(api):
    make_section(api)
    _instance(api)
    Item.delete().where(Item.item_name == "i|port").execute()
    cache.advance("demo", 10_000)
    data = api.ok("instance_get", **WEB1)["data"]  # the original crashed here
    assert "i|port" not in data and data["s|owner"] == "ops"


def test_update_item_and_cas(api):
    make_section(api)
    _instance(api)
    assert api.stat("instance_update_item", namespace="demo", instance_name="nope",
                    item_name="i|port", item_value=1) == "ERR_INSTANCE_IS_NOT_EXIST"
    assert api.stat("instance_update_item", **WEB1, item_name="i|nope", item_value=1) \
        == "ERR_ITEM_IS_NOT_EXIST"
    assert api.stat("instance_update_item", **WEB1, item_name="i|port", item_value="x") \
        == "ERR_ITEM_VALUE_INVALID"
    rev = api.ok("instance_get", **WEB1, value_format="detail")["data"]["i|port"]["revision"]
    done = api.ok("instance_update_item", **WEB1, item_name="i|port", item_value=81,
                  revision=rev)["data"]
    assert done["item_value"] == 81 and done["revision"] > rev
    status, body, reason = api.call("instance_update_item", **WEB1, item_name="i|port",
                                    item_value=82, revision=rev)
    assert (status, body["stat"]) == (409, "ERR_ITEM_UPDATE_FAILED")
    assert body["data"] == {"item_id": done["item_id"], "revision": done["revision"],
                            "item_value": 81} and "revision" in reason
    assert api.stat("instance_update_item", **WEB1, item_name="i|port", item_value=82,
                    item_value_old=80) == "ERR_ITEM_UPDATE_FAILED"
    api.ok("instance_update_item", **WEB1, item_name="i|port", item_value=82,
           item_value_old="81")
    # same-second edits never look like "no change" (the original's u_time CAS did)
    for n in range(83, 88):
        api.ok("instance_update_item", **WEB1, item_name="i|port", item_value=n,
               item_value_old=n - 1)
    assert api.ok("instance_get", **WEB1)["data"]["i|port"] == 87


def test_constraints_checked_on_every_write(api):
    make_section(api, items={"i|port": 80, "s|env": "dev", "s|host": "a1"},
                 **{"i|port": {"item_min": 1, "item_max": 100},
                    "s|env": {"item_enum": ["dev", "prod"]},
                    "s|host": {"item_regex": "[a-z][0-9]+"}})
    _instance(api)
    for item, bad in (("i|port", 101), ("i|port", 0), ("s|env", "qa"), ("s|host", "1a")):
        _status, body, reason = api.call("instance_update_item", **WEB1, item_name=item,
                                        item_value=bad)
        assert body["stat"] == "ERR_ITEM_VALUE_INVALID" and item in reason, (item, reason)
    api.ok("instance_update_item", **WEB1, item_name="s|env", item_value="prod")


def test_update_items_is_all_or_nothing(api):
    make_section(api)
    _instance(api)
    before = api.ok("instance_get", **WEB1)
    _status, body, reason = api.call("instance_update_items", **WEB1,
                                    items={"i|port": 1, "s|owner": "me", "f|load": "heavy"})
    assert body["stat"] == "ERR_ITEM_VALUE_INVALID" and "f|load" in reason
    assert api.stat("instance_update_items", **WEB1, items={"i|port": 1, "i|nope": 2}) \
        == "ERR_ITEM_IS_NOT_EXIST"
    after = api.ok("instance_get", **WEB1)
    assert after == before
    done = api.ok("instance_update_items", **WEB1, items={"i|port": 1, "s|owner": "me"},
                  revision=before["revision"])["data"]
    assert api.ok("instance_get", **WEB1)["data"]["s|owner"] == "me"
    assert api.stat("instance_update_items", **WEB1, items={"i|port": 2},
                    revision=before["revision"]) == "ERR_ITEM_UPDATE_FAILED"
    assert api.ok("instance_get", **WEB1)["revision"] == done["revision"]
    assert api.stat("instance_update_items", **WEB1, items={}) == "ERR_PARAM_IS_INVALID"


def test_update_section_up_and_down(api):
    make_section(api, items={"i|port": 80, "s|owner": "ops", "i|size": 1, "s|old": "x"})
    make_section(api, version="v2", items={"i|port": 80, "s|owner": "team",
                                           "s|size": "1", "b|new": True})
    _instance(api, **{"i|port": 8080, "i|size": 3})
    assert api.stat("instance_update_section", namespace="demo", instance_name="nope",
                    section_version="v2") == "ERR_INSTANCE_IS_NOT_EXIST"
    assert api.stat("instance_update_section", **WEB1, section_version="v9") \
        == "ERR_SECTION_IS_NOT_EXIST"
    api.ok("section_create", namespace="demo", section_name="host", section_version="v3")
    assert api.stat("instance_update_section", **WEB1, section_version="v3") \
        == "ERR_SECTION_IS_NOT_ENABLED"
    old_ids = {n: i["item_id"] for n, i in
               api.ok("instance_get", **WEB1, value_format="detail")["data"].items()}
    api.ok("instance_update_section", **WEB1, section_version="v2")
    detail = api.ok("instance_get", **WEB1, value_format="detail")["data"]
    assert {n: d["item_value"] for n, d in detail.items()} == {
        "i|port": 8080,       # kept
        "s|owner": "team",    # still the old default: takes the new default
        "s|size": "3",        # type changed: converted
        "b|new": True}        # new: default
    assert detail["i|port"]["item_id"] == old_ids["i|port"]
    assert detail["b|new"]["item_description"] == "the b|new"
    assert Item.select().where(Item.item_name == "s|old").count() == 0
    assert api.ok("instance_list", namespace="demo", section_name="host",
                  section_version="v2")["data"]["total"] == 1
    api.ok("instance_update_section", **WEB1, section_version="v1")
    data = api.ok("instance_get", **WEB1)["data"]
    assert data == {"i|port": 8080, "s|owner": "ops", "i|size": 3, "s|old": "x"}


def test_update_section_refuses_values_that_do_not_convert(api):
    make_section(api, items={"s|size": "big"})
    make_section(api, version="v2", items={"i|size": 1})
    _instance(api, **{"s|size": "huge"})
    _status, body, reason = api.call("instance_update_section", **WEB1, section_version="v2")
    assert body["stat"] == "ERR_INSTANCE_UPDATE_FAILED" and "i|size" in reason
    assert api.ok("instance_get", **WEB1)["data"] == {"s|size": "huge"}


def test_delete_removes_items_in_one_go(api):
    make_section(api)
    _instance(api)
    api.ok("instance_delete", **WEB1)
    assert api.stat("instance_delete", **WEB1) == "ERR_INSTANCE_IS_NOT_EXIST"
    with db.database.connection_context():
        assert Item.select().count() == 0 and Instance.select().count() == 0
    assert api.stat("instance_get", **WEB1) == "ERR_INSTANCE_IS_NOT_EXIST"


def test_instance_list_filters_extra_items_and_sort_by_value(api):
    make_section(api)
    for name, port in (("web1", 30), ("web2", 10), ("db1", 20)):
        _instance(api, name=name, **{"i|port": port})
    base = {"namespace": "demo", "section_name": "host"}
    data = api.ok("instance_list", **base, extra_items="i|port,s|owner", sort="-i|port")["data"]
    assert data["total"] == 3
    assert [(r["instance_name"], r["i|port"]) for r in data["list"]] == [
        ("web1", 30), ("db1", 20), ("web2", 10)]
    assert data["list"][0]["s|owner"] == "ops"
    assert {"namespace", "instance_name", "section_name", "section_version", "section_md5",
            "u_time"} <= data["list"][0].keys()
    rows = api.ok("instance_list", **base, sort="i|port")["data"]["list"]
    assert [r["instance_name"] for r in rows] == ["web2", "db1", "web1"]
    rows = api.ok("instance_list", **base, instance_name="web", sort="-instance_name")
    assert [r["instance_name"] for r in rows["data"]["list"]] == ["web2", "web1"]
    page = api.ok("instance_list", **base, page_index=2, page_size=2, sort="instance_name")
    assert [r["instance_name"] for r in page["data"]["list"]] == ["web2"]
    assert api.ok("instance_list", **base, section_md5="nomatch")["data"]["total"] == 0
    assert api.stat("instance_list", **base, sort="x|bad") == "ERR_SECTION_ITEM_TYPE_INVALID"
