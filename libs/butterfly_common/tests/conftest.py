"""Fixtures shared by the tests of this package.

mq: one protocol suite runs against three topologies, each started once per session:
a plain redis-server, nutcracker in front of two redis-server shards, and a 3-master
Redis Cluster.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from butterfly_common.mq import Broker
from butterfly_common.redis_client import make_redis
from butterfly_common.testing import Nutcracker, RedisClusterServers, RedisServer

MQ_BACKENDS = ["redis", "twemproxy", "cluster"]


@dataclass
class MQBackend:
    """A running topology: the URL clients use and the redis-server ports behind it."""

    name: str
    url: str
    shard_ports: list[int] = field(default_factory=list)


@pytest.fixture(scope="session")
def mq_redis() -> Iterator[MQBackend]:
    # its own server, not the plugin's redis_server: the protocol suite counts workers
    # and topics, which the app tests on redis_server register too
    with RedisServer() as server:
        yield MQBackend("redis", server.url, [server.port])


@pytest.fixture(scope="session")
def mq_twemproxy(nutcracker: Nutcracker) -> MQBackend:
    return MQBackend("twemproxy", nutcracker.url, list(nutcracker.shard_ports))


@pytest.fixture(scope="session")
def mq_cluster() -> Iterator[MQBackend]:
    with RedisClusterServers(3) as cluster:
        yield MQBackend("cluster", cluster.url, cluster.ports)


@pytest.fixture(scope="session", params=MQ_BACKENDS)
def mq_backend(request: pytest.FixtureRequest) -> MQBackend:
    """Each mq protocol test runs once per topology."""
    return request.getfixturevalue(f"mq_{request.param}")


@pytest.fixture(scope="session")
def mq_client(mq_backend: MQBackend) -> Iterator[Any]:
    redis_client = make_redis(mq_backend.url)
    yield redis_client
    redis_client.close()


@pytest.fixture
def broker(mq_client: Any) -> Broker:
    """A broker with short timings, so lease expiry and backoff take ~0.1 s, not minutes."""
    return Broker(mq_client, lease=0.3, heartbeat_ttl=5.0, min_backoff=0.05,
                  max_backoff=0.2, settle_grace=0.2)


@pytest.fixture
def topic(broker: Broker) -> str:
    """A fresh topic with one live consumer (``w-test``), so publish accepts it."""
    name = f"/t{uuid.uuid4().hex[:10]}/handler"
    broker.heartbeat("w-test", [name], {"pid": 0})
    return name


# Framework fixtures (sample service app) live in their own module; redis_server,
# nutcracker, callee... come from the butterfly pytest plugin (butterfly_common.testing).
from fixtures_app import client, make_app, sample_consumers  # noqa: E402, F401


@pytest.fixture(scope="module", params=["redis", "twemproxy"])
def redis_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """The queue tests' store: a plain redis-server, then two shards behind nutcracker."""
    if request.param == "redis":
        with RedisServer() as server:
            yield server.url
    else:
        with RedisServer() as s1, RedisServer() as s2, Nutcracker([s1.port, s2.port]) as proxy:
            yield proxy.url
