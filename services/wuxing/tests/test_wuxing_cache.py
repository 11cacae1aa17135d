"""The Redis cache: JSON entries, hits, invalidation on every write, Redis outages."""

import contextlib
import json
import threading

from wuxing_testlib import make_section

from butterfly_common.redis_client import make_redis
from butterfly_common.testing import RedisServer
from butterfly_wuxing import cache

WEB1 = {"namespace": "demo", "instance_name": "web1"}


def _keys(redis_url):
    return sorted(make_redis(redis_url).keys("wx:*"))


def test_entries_are_json_tagged_with_the_namespace_revision(api, redis_server):
    make_section(api)
    api.ok("instance_create", **WEB1, section_name="host", section_version="v1")
    api.ok("instance_get", **WEB1)
    client = make_redis(redis_server.url)
    raw = client.get("wx:{demo}:i:web1")
    tag, _, payload = raw.partition("\n")
    assert tag == client.get("wx:{demo}:rev")
    assert json.loads(payload)["items"]["i|port"]["item_value"] == 80
    # a hit is served from the entry: change the DB behind the API's back, still cached
    from butterfly_wuxing.models import Item
    Item.update(value_int=1).where(Item.item_name == "i|port").execute()
    assert api.ok("instance_get", **WEB1)["data"]["i|port"] == 80
    # any write moves the version on: the next read goes to the database
    api.ok("instance_update_item", **WEB1, item_name="s|owner", item_value="x")
    assert api.ok("instance_get", **WEB1)["data"]["i|port"] == 1


def test_upgrade_deleting_items_invalidates_instance_and_items(api):
    make_section(api, items={"i|a": 1, "i|b": 2})
    make_section(api, version="v2", items={"i|a": 1})
    api.ok("instance_create", **WEB1, section_name="host", section_version="v1")
    detail = api.ok("instance_get", **WEB1, value_format="detail")["data"]
    b_id = detail["i|b"]["item_id"]
    assert api.ok("item_get", item_id=b_id)["data"]["item_value"] == 2
    api.ok("instance_update_section", **WEB1, section_version="v2")
    assert api.ok("instance_get", **WEB1)["data"] == {"i|a": 1}
    assert api.stat("item_get", item_id=b_id) == "ERR_ITEM_IS_NOT_FOUND"


def test_no_read_after_a_write_answer_sees_an_older_value(api):
    """Two writers, four readers: a read started after a write answered never sees less."""
    make_section(api, items={"i|a": 0, "i|b": 0})
    api.ok("instance_create", **WEB1, section_name="host", section_version="v1")
    acked = {"i|a": 0, "i|b": 0}
    stop = threading.Event()
    problems: list[str] = []
    reads = [0]

    def writer(item):
        client = api.app.test_client()
        for n in range(1, 41):
            reply = client.post("/wuxing/instance_update_item", headers=_auth(),
                                json={**WEB1, "item_name": item, "item_value": n})
            assert reply.get_json()["stat"] == "OK"
            acked[item] = n

    def reader():
        client = api.app.test_client()
        while not stop.is_set():
            floor = dict(acked)
            data = client.post("/wuxing/instance_get", json=WEB1).get_json()["data"]
            reads[0] += 1
            for item, low in floor.items():
                if data[item] < low:
                    problems.append(f"{item}: read {data[item]} after {low} was acked")

    writers = [threading.Thread(target=writer, args=(i,)) for i in acked]
    readers = [threading.Thread(target=reader) for _ in range(4)]
    for t in readers + writers:
        t.start()
    for t in writers:
        t.join()
    stop.set()
    for t in readers:
        t.join()
    assert not problems, problems[:5]
    assert reads[0] > 20
    assert api.ok("instance_get", **WEB1)["data"] == {"i|a": 40, "i|b": 40}


def _auth():
    from wuxing_testlib import AUTH
    return AUTH


def test_a_redis_outage_degrades_to_database_reads(fresh, sqlite_url):
    server = RedisServer().start()
    port = server.port
    with contextlib.contextmanager(fresh)(server.url, sqlite_url) as api:
        make_section(api)
        api.ok("instance_create", **WEB1, section_name="host", section_version="v1")
        api.ok("instance_get", **WEB1)
        server.stop()
        # reads and writes keep working from the database, never an error
        api.ok("instance_update_item", **WEB1, item_name="i|port", item_value=81)
        assert api.ok("instance_get", **WEB1)["data"]["i|port"] == 81
        assert api.ok("watch", namespace="demo", since=0, timeout=0)["data"]["changes"]
        cache.get_cache()._broken_until = 0  # do not wait out the breaker in a test
        server = RedisServer(port).start()
        try:
            api.ok("instance_update_item", **WEB1, item_name="i|port", item_value=82)
            assert api.ok("instance_get", **WEB1)["data"]["i|port"] == 82
            assert api.ok("instance_get", **WEB1)["data"]["i|port"] == 82
            assert "wx:{demo}:i:web1" in _keys(server.url)
        finally:
            server.stop()


def test_cache_off(fresh, redis_server, sqlite_url):
    with contextlib.contextmanager(fresh)(redis_server.url, sqlite_url,
                                          WUXING_CACHE="0") as api:
        make_section(api)
        api.ok("instance_create", **WEB1, section_name="host", section_version="v1")
        assert api.ok("instance_get", **WEB1)["data"]["i|port"] == 80
        assert "wx:{demo}:i:web1" not in _keys(redis_server.url)


def _get_calls(client) -> int:
    return int(client.info("commandstats").get("cmdstat_get", {}).get("calls", 0))


def test_within_a_lease_hits_ask_redis_nothing(sqlite_api, redis_server):
    from butterfly_wuxing.config import WuxingConfig

    make_section(sqlite_api)
    sqlite_api.ok("instance_create", **WEB1, section_name="host", section_version="v1")
    sqlite_api.ok("instance_get", **WEB1)  # the entry is in Redis now
    other = cache.Cache(redis_server.url, WuxingConfig(cache_lease=60.0))
    key = cache.entry_key("demo", "i", "web1")
    assert other.get("demo", key)[0]["items"]["i|port"]["item_value"] == 80
    redis = make_redis(redis_server.url)
    before = _get_calls(redis)
    for _ in range(50):
        assert other.get("demo", key)[0]["items"]["i|port"]["item_value"] == 80
    assert _get_calls(redis) == before
    # without a lease every hit asks for the version key
    plain = cache.Cache(redis_server.url, WuxingConfig(cache_lease=0.0))
    plain.get("demo", key)
    before = _get_calls(redis)
    for _ in range(5):
        plain.get("demo", key)
    assert _get_calls(redis) == before + 5


def test_a_write_waits_only_for_the_leases_still_running(sqlite_api, redis_server):
    """The version advance answers how long the latest lease on an older version still
    runs: nothing when no process read the namespace within its lease, most of a lease
    right after a read (either script: an entry's read or a renewal of the version
    alone), a whole lease when the version key was missing (a Redis that lost its keys
    lost the marks too)."""
    import time

    from butterfly_wuxing.config import WuxingConfig

    writer = cache.Cache(redis_server.url, WuxingConfig(cache_lease=0.5))
    reader = cache.Cache(redis_server.url, WuxingConfig(cache_lease=0.5))
    assert writer.advance("quiet", 1) == 0.5  # no version key yet
    assert writer.advance("quiet", 2) == 0.0  # nobody read it: the write answers at once
    assert reader.get("quiet", cache.entry_key("quiet", "i", "x")) == (None, "2")
    assert 0.3 < writer.advance("quiet", 3) <= 0.5  # a lease on version 2 runs
    # a renewal: the entry is remembered, the lease ran out, the version alone is read
    make_section(sqlite_api)
    sqlite_api.ok("instance_create", **WEB1, section_name="host", section_version="v1")
    sqlite_api.ok("instance_get", **WEB1)
    key = cache.entry_key("demo", "i", "web1")
    assert reader.get("demo", key)[0] is not None
    deadline = time.monotonic() + 10
    while reader._leased("demo") is not None:
        assert time.monotonic() < deadline, "the lease never ran out"
        time.sleep(0.01)
    assert reader.get("demo", key)[0] is not None  # served from memory after one GET
    revision = sqlite_api.ok("namespace_get", namespace="demo")["data"]["revision"]
    assert 0.3 < writer.advance("demo", revision + 1) <= 0.5
    # without a lease nothing is recorded and nothing waited for
    plain = cache.Cache(redis_server.url, WuxingConfig(cache_lease=0.0))
    plain.get("quiet", cache.entry_key("quiet", "i", "x"))
    assert plain.advance("quiet", 4) == 0.0


def test_a_write_answers_only_after_other_processes_leases_ran_out(fresh, redis_server,
                                                                     sqlite_url):
    """Another process (its own Cache) holds a lease on the version before a write: once
    the write has answered, that process must not serve its remembered entry."""
    from butterfly_wuxing.config import WuxingConfig

    with contextlib.contextmanager(fresh)(redis_server.url, sqlite_url,
                                          WUXING_CACHE_LEASE="0.5") as api:
        make_section(api)
        api.ok("instance_create", **WEB1, section_name="host", section_version="v1")
        api.ok("instance_get", **WEB1)
        other = cache.Cache(redis_server.url, WuxingConfig(cache_lease=0.5))
        key = cache.entry_key("demo", "i", "web1")
        for _ in range(3):
            assert other.get("demo", key)[0]["items"]["i|port"]["item_value"] == 80
            api.ok("instance_update_item", **WEB1, item_name="i|port", item_value=81)
            value, _ = other.get("demo", key)
            assert value is None or value["items"]["i|port"]["item_value"] == 81
            api.ok("instance_update_item", **WEB1, item_name="i|port", item_value=80)
            api.ok("instance_get", **WEB1)
