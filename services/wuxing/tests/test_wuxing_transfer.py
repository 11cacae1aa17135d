"""Export a namespace, import it into another (dry run shows the diff, then applies)."""

from wuxing_testlib import make_section

WEB1 = {"namespace": "demo", "instance_name": "web1"}


def test_export_import_round_trip_with_dry_run(api):
    make_section(api, **{"i|port": {"item_min": 1}})
    api.ok("instance_create", **WEB1, section_name="host", section_version="v1",
           items_data={"i|port": 8080})
    doc = api.ok("export", namespace="demo")["data"]
    assert doc["format"] == "butterfly-wuxing/1" and doc["instances"][0]["items"]["i|port"] \
        == 8080
    dry = api.ok("import", document=doc, namespace="copy", dry_run=True)["data"]
    assert dry["dry_run"] is True
    assert [s["section_name"] for s in dry["diff"]["sections_created"]] == ["host"]
    assert [i["instance_name"] for i in dry["diff"]["instances_created"]] == ["web1"]
    assert api.ok("export", namespace="copy")["data"]["sections"] == []
    api.ok("import", document=doc, namespace="copy")
    copy = api.ok("export", namespace="copy")["data"]
    assert copy["sections"] == doc["sections"] and copy["instances"] == doc["instances"]
    # a changed value shows as one item change; applying it is one more write
    doc["instances"][0]["items"]["i|port"] = 9090
    diff = api.ok("namespace_import", document=doc, namespace="copy", dry_run=True)["data"]
    assert diff["diff"]["items_changed"] == [{"instance_name": "web1", "item_name": "i|port",
                                              "item_value_old": 8080, "item_value": 9090}]
    api.ok("import", document=doc, namespace="copy")
    assert api.ok("instance_get", namespace="copy", instance_name="web1")["data"]["i|port"] \
        == 9090


def test_import_refuses_conflicts_and_bad_documents(api):
    make_section(api)
    doc = api.ok("export", namespace="demo")["data"]
    doc["sections"][0]["section_template"]["i|port"]["item_default"] = 1
    assert api.stat("import", document=doc) == "ERR_IMPORT_CONFLICT"
    assert api.stat("import", document={"format": "other"}) == "ERR_IMPORT_INVALID"
    doc = api.ok("export", namespace="demo")["data"]
    doc["instances"] = [{"instance_name": "x", "section_name": "host",
                         "section_version": "v1", "items": {"i|port": "NaN-ish"}}]
    assert api.stat("import", document=doc, namespace="copy") == "ERR_ITEM_VALUE_INVALID"
    assert api.ok("export", namespace="copy")["data"]["sections"] == []
