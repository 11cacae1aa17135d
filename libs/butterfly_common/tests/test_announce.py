"""announce.py: the URL an instance announces, its record, and what a reader keeps."""

from __future__ import annotations

import json
import socket
import time

import pytest

from butterfly_common import announce
from butterfly_common.discovery import discover
from butterfly_common.redis_client import make_redis
from butterfly_common.service import Service
from butterfly_common.settings import SettingsError, load_settings
from butterfly_common.testing import RedisServer, free_port


def test_the_announced_url_follows_host_port_or_the_variable() -> None:
    base = {"BUTTERFLY_PORT": "4711"}
    assert announce.announce_url(load_settings(base)) == "http://127.0.0.1:4711"
    # bound to every address: other machines reach it by this host's name
    anywhere = load_settings({**base, "BUTTERFLY_HOST": "0.0.0.0"})
    assert announce.announce_url(anywhere) == f"http://{socket.gethostname()}:4711"
    assert announce.announce_url(load_settings({**base, "BUTTERFLY_HOST": "::1"})) \
        == "http://[::1]:4711"
    given = load_settings({**base, "BUTTERFLY_ANNOUNCE": "https://shop.example:443/"})
    assert announce.announce_url(given) == "https://shop.example:443"
    for off in ("off", "OFF"):
        assert announce.announce_url(load_settings({**base, "BUTTERFLY_ANNOUNCE": off})) \
            is None
    with pytest.raises(SettingsError, match="BUTTERFLY_ANNOUNCE"):
        load_settings({**base, "BUTTERFLY_ANNOUNCE": "shop:4711"})
    # not a service URL variable (BUTTERFLY_<SVC>_URL)
    assert "announce" not in given.service_urls


def test_a_record_names_the_routes_and_the_role_each_needs() -> None:
    service = Service("sample", 4712, "sample_handlers")
    settings = load_settings({"BUTTERFLY_PORT": "4712"})
    entry = announce.record(service, settings, "http://h:4712",
                            discover("sample_handlers"))
    assert entry["service"] == "sample" and entry["url"] == "http://h:4712"
    routes = entry["routes"]
    assert routes == sorted(routes, key=lambda r: r["path"]) and routes
    roles = {r["role"] for r in routes}
    assert None in roles and "admin" in roles  # reads and the secure app's admin route
    assert {r["kind"] for r in routes} == {"api", "raw", "download"}


def test_readers_keep_fresh_records_and_forget_old_ones(redis_server: RedisServer) -> None:
    client = make_redis(redis_server.url)
    client.delete(announce.KEY)
    now = time.time()
    announce.announce(client, {"service": "a", "url": "http://a:1", "routes": []})
    for name, age in (("stale", announce.STALE + 1), ("gone", announce.FORGET + 1)):
        client.hset(announce.KEY, f"{name}|http://x", json.dumps(
            {"service": name, "url": "http://x", "seen": now - age}))
    client.hset(announce.KEY, "bad", "{")
    client.hset(announce.KEY, "file|file:///etc/passwd", json.dumps(
        {"service": "file", "url": "file:///etc/passwd", "seen": now}))
    assert [e["service"] for e in announce.announced(client, now)] == ["a"]
    assert set(client.hkeys(announce.KEY)) == {"a|http://a:1", "stale|http://x"}
    # announcing again refreshes the one field of the instance
    announce.announce(client, {"service": "a", "url": "http://a:1", "routes": [],
                               "seen": 0})
    (entry,) = announce.announced(client)
    assert entry["seen"] >= now and client.hlen(announce.KEY) == 2


def test_an_unreachable_redis_only_delays_the_announcement() -> None:
    dead = make_redis(f"redis://127.0.0.1:{free_port()}/0")
    announcer = announce.Announcer(lambda: dead, {"service": "a", "url": "http://a:1"})
    assert announcer.once() is False  # logged once, never raised into the service
    assert announcer.once() is False
