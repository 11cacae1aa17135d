"""Issue 12 through baichuan's HTTP API: deep or malformed data is refused before it is
stored (defect 2, the surrogate part of 9), and records stored before the limit existed
can still be read."""

from __future__ import annotations

from baichuan_helpers import TOPIC, refused

from butterfly_common.mq import Broker


def deep_text(levels: int) -> str:
    return '{"a":' * levels + "1" + "}" * levels


def deep(levels: int) -> dict:
    value: dict = {"leaf": 1}
    for _ in range(levels):
        value = {"a": value}
    return value


def test_defect_02_deep_publish_is_400_and_stores_nothing(client, served, broker):
    served()
    for levels in (100, 600, 989, 3000):
        body = f'{{"topic": "{TOPIC}", "data": {deep_text(levels)}}}'
        response = client.post("/baichuan/publish", data=body,
                               content_type="application/json")
        refused(response, 400, "ERR_BAD_PARAMS", "nested deeper than 64")
        query = client.get("/baichuan/publish",
                           query_string={"topic": TOPIC, "data": deep_text(levels)})
        refused(query, 400, "ERR_BAD_PARAMS", "nested deeper than 64")
    assert broker.counts(TOPIC) == {s: 0 for s in broker.counts(TOPIC)}
    assert client.post("/baichuan/publish", json={"topic": TOPIC, "data": deep(40)}
                       ).status_code == 200


def test_defect_02_msg_and_msgs_never_500_on_a_deep_stored_record(client, served, redis):
    """A record stored before the limit existed (here: by a broker without the check)
    is shown with its too-deep part clipped, never as a 500."""
    served()
    legacy = Broker(redis)
    legacy.max_depth = 100_000
    msg_id = legacy.publish(TOPIC, deep(900)).msg_id
    shown = client.get("/baichuan/msg", query_string={"msg_id": msg_id})
    assert shown.status_code == 200, shown.data[:200]
    assert "nested too deep" in shown.get_data(as_text=True)
    listing = client.get("/baichuan/msgs", query_string={"topic": TOPIC})
    assert listing.status_code == 200 and listing.get_json()["data"]["total"] == 1


def test_defect_09_lone_surrogate_in_publish_is_400(client, served, broker):
    served()
    for data in ('{"s": "\\ud800"}', '{"\\udc00": 1}', '{"s": ["ok", "\\udbff"]}'):
        body = f'{{"topic": "{TOPIC}", "data": {data}}}'
        response = client.post("/baichuan/publish", data=body,
                               content_type="application/json")
        refused(response, 400, "ERR_BAD_PARAMS", "not valid Unicode")
    assert broker.counts(TOPIC)["queued"] == 0
