"""Coordination primitives on plain Redis and through Twemproxy (one key per command)."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter

import pytest

from butterfly_common.coordination import (
    Lease,
    Members,
    Version,
    cad,
    cas,
    cas_many,
    once,
    owner_of,
)
from butterfly_common.redis_client import make_redis
from butterfly_common.testing import wait_until


@pytest.fixture(params=["redis", "twemproxy"])
def client(request):
    server = request.getfixturevalue("redis_server" if request.param == "redis"
                                     else "nutcracker")
    redis = make_redis(server.url)
    yield redis
    redis.close()


def key(name: str) -> str:
    return f"t:{name}:{uuid.uuid4().hex[:8]}"


def test_cas_and_cad(client):
    k = key("cas")
    client.set(k, "a", px=60000)
    assert not cas(client, k, "b", "c")
    assert cas(client, k, "a", "b", ttl=5)
    assert client.get(k) == "b" and 0 < client.pttl(k) <= 5000
    assert cas(client, k, "b", "c")  # ttl=None keeps the TTL
    assert 0 < client.pttl(k) <= 5000
    assert not cad(client, k, "b") and client.get(k) == "c"
    assert cad(client, k, "c") and client.get(k) is None
    a, b = key("m"), key("m")
    client.set(a, "1")
    client.set(b, "x")
    assert cas_many(client, [(a, "1", "2", 10), (b, "1", "2", None)]) == [True, False]
    assert cas_many(client, []) == []


def test_once(client):
    k = key("once")
    assert once(client, k, 0.3)
    assert not once(client, k, 0.3)
    wait_until(lambda: once(client, k, 0.3), 5, what="the once-key to expire")


def test_members_live_and_owner(client):
    group = key("grp")
    members = Members(client, group, ttl=0.5)
    members.beat("a")
    members.beat("b", ttl=30)
    assert members.live() == ["a", "b"]
    assert members.alive(["a", "b", "c"]) == {"a": True, "b": True, "c": False}
    wait_until(lambda: members.live() == ["b"], 5, what="a's heartbeat to lapse")
    members.leave("b")
    assert members.live() == [] and members.seen(3600) == ["a"]
    members.forget(0)
    assert members.seen(3600) == []


def test_owner_of_is_stable_and_spread():
    live = ["e1", "e2", "e3"]
    owners = Counter(owner_of(f"job{i}", live) for i in range(3000))
    assert set(owners) == set(live) and min(owners.values()) > 800
    moved = sum(owner_of(f"job{i}", live) != owner_of(f"job{i}", ["e1", "e2"])
                for i in range(3000))
    assert moved == owners["e3"]  # only e3's keys move when e3 leaves
    assert owner_of("x", []) is None and Members.owner_of("x", ["solo"]) == "solo"


def test_lease_fencing(client):
    lease = Lease(client, key("lease"), ttl=0.3)
    first = lease.acquire("a")
    assert first == 1 and lease.acquire("b") is None
    assert lease.acquire("a") == first  # idempotent for the holder
    assert lease.renew("a", first) and not lease.renew("b", first)
    assert lease.holder() == ("a", first)
    second = wait_until(lambda: lease.acquire("b"), 5, what="a's lease to lapse")
    assert second > first
    assert not lease.renew("a", first) and not lease.release("a", first)
    assert lease.release("b", second) and lease.holder() is None
    assert lease.acquire("a") > second  # tokens only grow


def test_lease_one_holder_at_a_time(client):
    lease = Lease(client, key("race"), ttl=30)
    won: list[int] = []

    def contend(name: str) -> None:
        token = lease.acquire(name)
        if token:
            won.append(token)

    threads = [threading.Thread(target=contend, args=(f"h{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert won == [1]


def test_version_wait_change(client):
    version = Version(client, key("ver"))
    assert version.get() == 0
    assert version.bump() == 1
    started = time.monotonic()
    assert version.wait_change(1, 0.2) == 1
    assert 0.2 <= time.monotonic() - started < 2
    timer = threading.Timer(0.1, version.bump)
    timer.start()
    assert version.wait_change(1, 5) == 2
    timer.join()
