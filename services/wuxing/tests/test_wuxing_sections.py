"""Sections: every handler and error code, on SQLite and MariaDB."""

from wuxing_testlib import make_section

KEY = {"namespace": "demo", "section_name": "host", "section_version": "v1"}


def test_create_validates_names_and_refuses_duplicates(api):
    assert api.stat("section_create", namespace="x" * 17, section_name="a",
                    section_version="1") == "ERR_NAMESPACE_IS_INVALID"
    assert api.stat("section_create", namespace="bad{tag}", section_name="a",
                    section_version="1") == "ERR_NAMESPACE_IS_INVALID"
    assert api.stat("section_create", namespace="n", section_name="a" * 65,
                    section_version="1") == "ERR_SECTION_NAME_IS_INVALID"
    assert api.stat("section_create", namespace="n", section_name="a",
                    section_version="1" * 17) == "ERR_SECTION_VERSION_IS_INVALID"
    body = api.ok("section_create", **KEY)
    assert body["data"]["revision"] == 1
    status, body, reason = api.call("section_create", **KEY)
    assert (status, body["stat"]) == (409, "ERR_SECTION_IS_EXIST") and reason


def test_item_add_types_defaults_and_constraints(api):
    api.ok("section_create", **KEY)
    assert api.stat("section_item_add", **KEY, item_name="x|bad", item_default=1) \
        == "ERR_SECTION_ITEM_TYPE_INVALID"
    assert api.stat("section_item_add", **KEY, item_name="i|" + "p" * 63, item_default=1) \
        == "ERR_ITEM_NAME_IS_INVALID"
    assert api.stat("section_item_add", **KEY, item_name="i|port", item_default="eighty") \
        == "ERR_SECTION_ITEM_DEFAULT_INVALID"
    assert api.stat("section_item_add", **KEY, item_name="s|name", item_default="x" * 129) \
        == "ERR_SECTION_ITEM_DEFAULT_INVALID"
    assert api.stat("section_item_add", **KEY, item_name="i|port", item_default=80,
                    item_min=100, item_max=10) == "ERR_SECTION_ITEM_CONSTRAINT_INVALID"
    assert api.stat("section_item_add", **KEY, item_name="s|name", item_default="a",
                    item_regex="(") == "ERR_SECTION_ITEM_CONSTRAINT_INVALID"
    assert api.stat("section_item_add", **KEY, item_name="i|port", item_default=5,
                    item_min=10) == "ERR_SECTION_ITEM_DEFAULT_INVALID"
    api.ok("section_item_add", **KEY, item_name="i|port", item_default=80,
           item_description="port", item_min=1, item_max=65535)
    api.ok("section_item_add", **KEY, item_name="s|env", item_default="dev",
           item_enum="dev,prod")
    api.ok("section_item_add", **KEY, item_name="s|host", item_default="a1",
           item_regex="[a-z][0-9]+")
    assert api.stat("section_item_add", **KEY, item_name="i|port", item_default=1) \
        == "ERR_SECTION_ITEM_IS_EXIST"
    assert api.stat("section_item_add", namespace="demo", section_name="nope",
                    section_version="v1", item_name="i|a", item_default=1) \
        == "ERR_SECTION_IS_NOT_EXIST"
    data = api.ok("section_get", **KEY)["data"]
    assert data["is_enabled"] is False
    assert data["section_template"]["i|port"] == {
        "item_type": "int", "item_default": 80, "item_description": "port", "min": 1,
        "max": 65535}
    assert data["section_template"]["s|env"]["enum"] == ["dev", "prod"]


def test_item_delete(api):
    make_section(api, enable=False)
    assert api.stat("section_item_delete", **KEY, item_name="i|nope") \
        == "ERR_SECTION_ITEM_IS_NOT_EXIST"
    api.ok("section_item_delete", **KEY, item_name="i|port")
    assert "i|port" not in api.ok("section_get", **KEY)["data"]["section_template"]
    assert api.stat("section_item_delete", namespace="demo", section_name="nope",
                    section_version="v1", item_name="i|port") == "ERR_SECTION_IS_NOT_EXIST"


def test_enable_freezes_items_disable_and_delete_refused_in_use(api):
    make_section(api, enable=False)
    md5 = api.ok("section_get", **KEY)["data"]["section_md5"]
    assert len(md5) == 8
    api.ok("section_enable", **KEY)
    assert api.stat("section_enable", **KEY) == "ERR_SECTION_ENABLE_FAILED"
    assert api.stat("section_item_add", **KEY, item_name="i|x", item_default=1) \
        == "ERR_SECTION_IS_ENABLED"
    assert api.stat("section_item_delete", **KEY, item_name="i|port") \
        == "ERR_SECTION_IS_ENABLED"
    api.ok("instance_create", namespace="demo", instance_name="web1", section_name="host",
           section_version="v1")
    status, body, _ = api.call("section_disable", **KEY)
    assert (status, body["stat"]) == (409, "ERR_SECTION_IN_USE")
    assert api.stat("section_delete", **KEY) == "ERR_SECTION_IN_USE"
    api.ok("instance_delete", namespace="demo", instance_name="web1")
    api.ok("section_disable", **KEY)
    assert api.stat("section_disable", **KEY) == "ERR_SECTION_IS_NOT_ENABLED"
    api.ok("section_item_add", **KEY, item_name="i|x", item_default=1)
    assert api.ok("section_get", **KEY)["data"]["section_md5"] != md5
    api.ok("section_delete", **KEY)
    assert api.call("section_get", **KEY)[:2] == (404, {"stat": "ERR_SECTION_IS_NOT_EXIST"})
    assert api.stat("section_delete", **KEY) == "ERR_SECTION_IS_NOT_EXIST"
    assert api.stat("section_enable", **KEY) == "ERR_SECTION_IS_NOT_EXIST"
    assert api.stat("section_disable", **KEY) == "ERR_SECTION_IS_NOT_EXIST"


def test_section_list_as_the_admin_ui_calls_it(api):
    for version in ("v1", "v2", "v3"):
        api.ok("section_create", namespace="demo", section_name="host",
               section_version=version)
    api.ok("section_create", namespace="other", section_name="db", section_version="v1")
    # the admin page: GET with page_index, page_size, namespace, orderBy/orderDir
    reply = api.client.get("/wuxing/section_list?page_index=1&page_size=2&namespace=demo"
                           "&orderBy=section_version&orderDir=desc")
    data = reply.get_json()["data"]
    assert data["total"] == 3
    assert [s["section_version"] for s in data["list"]] == ["v3", "v2"]
    first = data["list"][0]
    assert {"namespace", "section_name", "section_version", "section_md5", "is_enabled",
            "u_time"} <= first.keys()
    assert first["namespace"] == "demo" and first["is_enabled"] is False
    assert len(first["u_time"]) == 19  # YYYY-MM-DD HH:MM:SS
    page2 = api.ok("section_list", namespace="demo", page_index=2, page_size=2)["data"]
    assert page2["total"] == 3 and len(page2["list"]) == 1
    assert api.ok("section_list")["data"]["total"] == 4
    assert api.stat("section_list", orderBy="section_template") == "ERR_PARAM_IS_INVALID"
    assert api.stat("section_list", orderBy="u_time", orderDir="sideways") \
        == "ERR_PARAM_IS_INVALID"
    assert api.stat("section_list", page_size=0) == "ERR_BAD_PARAMS"
