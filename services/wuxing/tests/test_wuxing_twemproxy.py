"""Through Twemproxy (nutcracker, two shards): cache, invalidation and watch still work.

Every wuxing key carries its namespace's hash tag and every command or script touches keys
of one tag, so nothing the proxy rejects or misroutes is ever sent.
"""

from __future__ import annotations

import contextlib
import threading

from wuxing_testlib import make_section

from butterfly_common.redis_client import make_redis
from butterfly_common.testing import Nutcracker, RedisServer

WEB1 = {"namespace": "demo", "instance_name": "web1"}


def test_cache_and_watch_through_twemproxy(fresh, sqlite_url):
    with RedisServer() as one, RedisServer() as two, \
            Nutcracker([one.port, two.port]) as proxy, \
            contextlib.contextmanager(fresh)(proxy.url, sqlite_url, flush=False) as api:
        for ns in ("demo", "other"):
            make_section(api, ns=ns)
            api.ok("instance_create", namespace=ns, instance_name="web1", section_name="host",
                   section_version="v1")
            assert api.ok("instance_get", namespace=ns, instance_name="web1")["data"][
                "i|port"] == 80
        shards = [make_redis(s.url) for s in (one, two)]
        # a namespace's version key and entries sit on one shard
        for ns in ("demo", "other"):
            holders = [i for i, shard in enumerate(shards)
                       if shard.exists(f"wx:{{{ns}}}:rev", f"wx:{{{ns}}}:i:web1") == 2]
            assert len(holders) == 1, (ns, holders)
        since = api.ok("namespace_get", namespace="demo")["data"]["revision"]
        got = {}
        watcher = threading.Thread(target=lambda: got.update(api.app.test_client().post(
            "/wuxing/watch", json={"namespace": "demo", "since": since, "timeout": 20})
            .get_json()))
        watcher.start()
        api.ok("instance_update_item", **WEB1, item_name="i|port", item_value=81)
        watcher.join(30)
        assert [c["item_value"] for c in got["data"]["changes"]] == [81]
        assert api.ok("instance_get", **WEB1)["data"]["i|port"] == 81
        detail = api.ok("instance_get", **WEB1, value_format="detail")["data"]
        assert api.ok("item_get", item_id=detail["i|port"]["item_id"])["data"][
            "item_value"] == 81
