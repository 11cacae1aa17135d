from wuxing_testlib import make_section


def test_create_and_get(api):
    make_section(api)
    api.ok("instance_create", namespace="demo", instance_name="web1", section_name="host",
           section_version="v1", items_data={"i|port": 8080})
    body = api.ok("instance_get", namespace="demo", instance_name="web1")
    assert body["data"] == {"i|port": 8080, "s|owner": "ops", "b|online": True,
                            "f|load": 0.5, "t|notes": ""}
