"""JSON Schema per item and per section: refused schemas, every violation listed, checked on
direct writes, at draft time and again at publish; the migrations that add the tables.
Both databases, over the real Gateway."""

from __future__ import annotations

import contextlib

from wuxing_testlib import make_section

from butterfly_common import db
from butterfly_wuxing import migrations
from butterfly_wuxing.models import (
    GRAY_MODELS,
    MODELS,
    REVIEW_MODELS,
    SchemaVersion,
    SectionSchema,
)

NS = "sch"
KEY = {"namespace": NS, "section_name": "svc", "section_version": "v1"}
#: a t| item holding a JSON document with two required fields
DOC_SCHEMA = {"contentMediaType": "application/json",
              "contentSchema": {"type": "object", "required": ["host", "port"],
                                "properties": {"host": {"type": "string", "minLength": 1},
                                               "port": {"type": "integer", "minimum": 1}}}}
#: cross-item: in prod, the port is unprivileged and debug is off
SECTION_SCHEMA = {"if": {"properties": {"s|env": {"const": "prod"}}},
                  "then": {"properties": {"i|port": {"minimum": 1024},
                                          "b|debug": {"const": False}}}}
ITEMS = {"i|port": 8080, "s|env": "dev", "b|debug": True,
         "t|upstream": '{"host": "db", "port": 5432}', "s|tag": "a-1"}


def _section(api, version: str = "v1", section_schema: dict | None = None,
             enable: bool = True) -> None:
    key = {**KEY, "section_version": version}
    make_section(api, ns=NS, name="svc", version=version, items=ITEMS, enable=False,
                 **{"t|upstream": {"item_schema": DOC_SCHEMA},
                    "s|tag": {"item_schema": {"type": "string",
                                              "pattern": "^[a-z]+-[0-9]+$"}}})
    if section_schema is not None:
        api.ok("section_schema_set", **key, section_schema=section_schema)
    if enable:
        api.ok("section_enable", **key)


def test_bad_schemas_are_refused(api):
    api.ok("section_create", **KEY)
    add = {**KEY, "item_name": "i|n", "item_default": 1}
    for schema, why in (({"type": "integr"}, "not a valid JSON Schema"),
                        ({"$ref": "http://127.0.0.1:9/elsewhere.json"}, "does not resolve"),
                        ({"minimum": 1, "description": "x" * 20_000}, "longer than")):
        status, body, reason = api.call("section_item_add", **add, item_schema=schema)
        assert (status, body["stat"]) == (400, "ERR_SECTION_ITEM_CONSTRAINT_INVALID"), schema
        assert why in reason, reason
    assert api.call("section_item_add", **add, item_schema=[1])[:2] == (
        400, {"stat": "ERR_BAD_PARAMS"})  # the framework's type check: an object
    status, body, reason = api.call("section_item_add", **add, item_schema={"minimum": 5})
    assert body["stat"] == "ERR_SECTION_ITEM_DEFAULT_INVALID" and "minimum" in reason
    api.ok("section_item_add", **add, item_schema={"minimum": 0})
    assert api.call("section_schema_set", **KEY, section_schema={"required": "i|n"})[
        1]["stat"] == "ERR_SECTION_SCHEMA_INVALID"
    # an enabled section's schema cannot change; the defaults must satisfy it to enable
    api.ok("section_schema_set", **KEY, section_schema={"properties": {"i|n": {"const": 2}}})
    status, body, reason = api.call("section_enable", **KEY)
    assert (status, body["stat"]) == (400, "ERR_SECTION_ENABLE_FAILED")
    assert body["violations"] == [{"path": "/i|n", "message": "2 was expected"}]
    api.ok("section_schema_set", **KEY)  # removed
    api.ok("section_enable", **KEY)
    assert api.call("section_schema_set", **KEY, section_schema={})[
        1]["stat"] == "ERR_SECTION_IS_ENABLED"


def test_direct_writes_list_every_violation(api):
    _section(api, section_schema=SECTION_SCHEMA)
    got = api.ok("section_get", **KEY)["data"]
    assert got["section_schema"] == SECTION_SCHEMA
    assert got["section_template"]["t|upstream"]["schema"] == DOC_SCHEMA
    base = {"namespace": NS, "section_name": "svc", "section_version": "v1"}
    # a section without a schema answers as it always did (no section_schema key)
    make_section(api, ns=NS, name="plain")
    assert "section_schema" not in api.ok("section_get", namespace=NS, section_name="plain",
                                          section_version="v1")["data"]

    status, body, reason = api.call("instance_create", **base, instance_name="a",
                                    items_data={"s|env": "prod", "i|port": 80})
    assert (status, body["stat"]) == (400, "ERR_SCHEMA_VIOLATION")
    assert body["violations"] == [{"path": "/b|debug", "message": "False was expected"},
                                  {"path": "/i|port",
                                   "message": "80 is less than the minimum of 1024"}]
    assert body["violation_count"] == 2 and "section schema" in reason
    api.ok("instance_create", **base, instance_name="a")
    inst = {"namespace": NS, "instance_name": "a"}
    status, body, reason = api.call("instance_update_item", **inst, item_name="t|upstream",
                                    item_value='{"port": 0}')
    assert (status, body["stat"]) == (400, "ERR_SCHEMA_VIOLATION")
    assert body["item_name"] == "t|upstream"
    assert [v["path"] for v in body["violations"]] == ["/", "/port"]
    assert "'host' is a required property" in reason and "minimum of 1" in reason
    assert api.call("instance_update_item", **inst, item_name="t|upstream",
                    item_value="{not json")[1]["violations"][0]["message"].startswith(
        "not JSON")
    assert api.stat("instance_update_item", **inst, item_name="s|tag",
                    item_value="A_1") == "ERR_SCHEMA_VIOLATION"
    # cross-item: all or nothing, in one transaction
    status, body, _ = api.call("instance_update_items", **inst,
                               items={"s|env": "prod", "i|port": 443})
    assert body["stat"] == "ERR_SCHEMA_VIOLATION" and len(body["violations"]) == 2
    assert api.ok("instance_get", **inst)["data"]["s|env"] == "dev"
    item_id = api.ok("instance_get", **inst, value_format="detail")["data"]["s|env"]["item_id"]
    assert api.stat("item_update", item_id=item_id, item_value="prod") \
        == "ERR_SCHEMA_VIOLATION"
    api.ok("instance_update_items", **inst, items={"i|port": 1443, "b|debug": False})
    api.ok("item_update", item_id=item_id, item_value="prod")
    assert api.ok("instance_get", **inst)["data"] == {
        "i|port": 1443, "s|env": "prod", "b|debug": False,
        "t|upstream": '{"host": "db", "port": 5432}', "s|tag": "a-1"}


def test_schemas_at_draft_time_and_again_at_publish(fresh, redis_server, db_url):
    with contextlib.contextmanager(fresh)(redis_server.url, db_url) as api:
        _section(api)  # v1: item schemas only
        _section(api, "v2", SECTION_SCHEMA)  # v2 adds the cross-item rule
        api.ok("instance_create", namespace=NS, instance_name="a", section_name="svc",
               section_version="v1")
        api.ok("review_set", namespace=NS, review=True)
        draft = {"namespace": NS, "instance_name": "a"}
        # at draft time: one bad item answers its own refusal, several are listed together
        status, body, _ = api.call("draft_set", **draft, items={"s|tag": "BAD"})
        assert (status, body["stat"]) == (400, "ERR_SCHEMA_VIOLATION")
        status, body, reason = api.call("draft_set", **draft, items={
            "s|tag": "BAD", "t|upstream": "{}", "i|port": "x"})
        assert (status, body["stat"]) == (400, "ERR_DRAFT_INVALID")
        assert sorted((v["item_name"], v.get("path", "")) for v in body["violations"]) == [
            ("i|port", ""), ("s|tag", "/"), ("t|upstream", "/"), ("t|upstream", "/")]
        assert api.ok("draft_get", namespace=NS)["data"]["total"] == 0
        # fine under v1's rules...
        api.ok("draft_set", **draft, items={"s|env": "prod", "i|port": 80,
                                            "t|upstream": '{"host": "h", "port": 1}'})
        # ...but the instance moves to v2 (section schema) before the publish
        api.ok("instance_update_section", namespace=NS, instance_name="a",
               section_version="v2")
        status, body, reason = api.call("publish", namespace=NS, message="prod on 80")
        assert (status, body["stat"]) == (400, "ERR_DRAFT_INVALID")
        assert [(v["instance_name"], v["item_name"], v["stat"], v["path"], v["reason"])
                for v in body["violations"]] == [
            ("a", "b|debug", "ERR_SCHEMA_VIOLATION", "/b|debug", "False was expected"),
            ("a", "i|port", "ERR_SCHEMA_VIOLATION", "/i|port",
             "80 is less than the minimum of 1024")]
        assert "2 violation(s)" in reason
        assert api.ok("instance_get", namespace=NS, instance_name="a")["data"]["i|port"] \
            == 8080  # nothing published
        # a draft edit breaking the section schema is refused at draft time too
        assert api.stat("draft_set", **draft, items={"b|debug": True}) \
            == "ERR_SCHEMA_VIOLATION"
        api.ok("draft_set", **draft, items={"i|port": 8443, "b|debug": False})
        rel = api.ok("publish", namespace=NS, message="prod on 8443")["data"]
        assert rel["state"] == "published"
        got = api.ok("instance_get", namespace=NS, instance_name="a")["data"]
        assert (got["s|env"], got["i|port"], got["b|debug"]) == ("prod", 8443, False)


def test_migrations_bring_a_version_1_database_up(api):
    """A database left at schema version 1 (before reviews and section schemas) gets the
    new tables, and a second run changes nothing."""
    with db.database.connection_context():
        db.database.drop_tables([*REVIEW_MODELS, SectionSchema, *GRAY_MODELS])
        SchemaVersion.update(version=1).execute()
        assert not SectionSchema.table_exists()
    assert migrations.migrate() == migrations.LATEST == 4
    with db.database.connection_context():
        assert all(m.table_exists() for m in [*MODELS, *REVIEW_MODELS, SectionSchema,
                                              *GRAY_MODELS])
    assert migrations.migrate() == 4
    make_section(api, ns=NS)
    api.ok("review_set", namespace=NS, review=True)


def test_export_import_carries_item_schemas_and_refuses_bad_ones(api):
    _section(api)
    api.ok("instance_create", namespace=NS, instance_name="a", section_name="svc",
           section_version="v1")
    document = api.ok("export", namespace=NS)["data"]
    api.ok("import", document=document, namespace="copy")
    copied = api.ok("section_get", namespace="copy", section_name="svc",
                    section_version="v1")["data"]["section_template"]
    assert copied["t|upstream"]["schema"] == DOC_SCHEMA
    assert api.stat("instance_update_item", namespace="copy", instance_name="a",
                    item_name="s|tag", item_value="NO") == "ERR_SCHEMA_VIOLATION"
    document["sections"][0]["section_template"]["s|tag"]["schema"] = {"type": 5}
    status, body, reason = api.call("import", document=document, namespace="copy2")
    assert (status, body["stat"]) == (400, "ERR_IMPORT_INVALID") and "s|tag" in reason
