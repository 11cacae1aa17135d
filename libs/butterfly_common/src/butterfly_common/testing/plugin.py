"""The Butterfly pytest plugin (entry point ``pytest11``), active wherever
butterfly-common is installed. Fixtures:

- ``redis_server`` (session): a private redis-server on a free port;
- ``nutcracker`` (session): Twemproxy in front of two private redis-server shards;
- ``redis``: a client of ``redis_server``, emptied (FLUSHALL) before the test, so no test
  sees another's keys, topics or workers;
- ``broker``: the queue :class:`~butterfly_common.mq.Broker` over ``redis`` (play a
  consumer with ``heartbeat`` + ``claim`` + ``complete``, no consumer process needed);
- ``mariadb_database``: the URL of a private MariaDB database, dropped afterwards
  (``BUTTERFLY_TEST_MYSQL_HOST`` / ``_PORT``, default 127.0.0.1:3306; fails, never
  skips, when the server is down);
- ``service_client(name, **env)``: a Flask test client of service ``name`` on the
  private Redis and a temp data/log dir; ``env`` adds ``BUTTERFLY_*`` / service
  variables (a value of None removes one);
- ``serve_process(name, **env)``: ``butterfly serve name`` (real gunicorn) on a free
  port, stopped at the end of the test;
- ``service_queue(name, **env)``: service ``name``'s queue consumer running in this
  process on the private Redis: ``.publish(topic, data)`` -> message id, ``.wait(id)`` ->
  the finished message; stopped at the end of the test;
- ``stub_broker(name, **env)``: a :class:`~butterfly_common.testing.stub_broker.StubBroker`
  serving service ``name`` in memory (no Redis, no threads): ``.publish(topic, data)``,
  ``.join()`` runs the messages through the service's handlers, ``.get(msg_id)`` their
  outcome; ``mq.publish`` / ``mq.get`` / ``mq.wait`` use it for the test's duration;
- ``callee``: a :class:`~butterfly_common.testing.callee.Callee` recording HTTP server.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from . import ButterflyService, Nutcracker, RedisServer
from . import mariadb_database as private_database
from .callee import Callee

if TYPE_CHECKING:
    from ..mq import Broker
    from ..service import Service
    from .stub_broker import StubBroker


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One throw-away redis-server for the session."""
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="session")
def nutcracker() -> Iterator[Nutcracker]:
    """Twemproxy (``hash_tag: "{}"``) over two throw-away shards; ``.url`` to connect,
    ``.shard_ports`` to look behind it."""
    with RedisServer() as s1, RedisServer() as s2, Nutcracker([s1.port, s2.port]) as proxy:
        yield proxy


@pytest.fixture
def redis(redis_server: RedisServer) -> Iterator[Any]:
    """A client of the session's private redis-server, emptied before the test."""
    from ..redis_client import make_redis

    client = make_redis(redis_server.url)
    client.flushall()
    yield client
    client.close()


@pytest.fixture
def broker(redis: Any) -> Broker:
    """The queue broker over ``redis`` (default timings, as a service's)."""
    from ..mq import Broker

    return Broker(redis)


@pytest.fixture
def mariadb_database() -> Iterator[str]:
    """A private MariaDB database's ``mysql://`` URL."""
    host = os.environ.get("BUTTERFLY_TEST_MYSQL_HOST", "127.0.0.1")
    port = int(os.environ.get("BUTTERFLY_TEST_MYSQL_PORT", "3306"))
    with private_database("bf_t", host, port) as url:
        yield url


def _env(request: pytest.FixtureRequest, base: dict[str, str], env: dict[str, Any]
         ) -> dict[str, str]:
    values = {**base, **env}
    if "BUTTERFLY_REDIS_URL" not in values:
        values["BUTTERFLY_REDIS_URL"] = request.getfixturevalue("redis_server").url
    return {k: str(v) for k, v in values.items() if v is not None}


@pytest.fixture
def service_client(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[..., Any]:
    """``service_client("baichuan", BAICHUAN_MAX_WAIT="1")`` -> a Flask test client."""

    def build(name: str, **env: Any) -> Any:
        from ..app import create_app
        from ..settings import load_settings

        base = {"BUTTERFLY_LOG_DIR": str(tmp_path / "log"),
                "BUTTERFLY_DATA_DIR": str(tmp_path / "data")}
        return create_app(name, load_settings(_env(request, base, env))).test_client()

    return build


@pytest.fixture
def serve_process(request: pytest.FixtureRequest) -> Iterator[Callable[..., ButterflyService]]:
    """``serve_process("core", BUTTERFLY_WORKERS="1")`` -> a started ButterflyService
    (``.url``, ``.log_dir``, ``.kill()``); all are stopped when the test ends."""
    started: list[ButterflyService] = []

    def start(name: str, **env: Any) -> ButterflyService:
        service = ButterflyService(name, _env(request, {}, env))
        started.append(service)
        return service.start()

    yield start
    for service in reversed(started):
        service.__exit__(None, None, None)


class ServiceQueue:
    """A service's consumer in this process and the queue client beside it."""

    def __init__(self, consumer: Any) -> None:
        self.consumer = consumer

    def publish(self, topic: str, data: dict[str, Any], **options: Any) -> str:
        from .. import mq

        return mq.publish(topic, data, **options).msg_id

    def wait(self, msg_id: str, timeout: float = 10.0) -> Any:
        """The message once finished or failed (as last seen at the timeout)."""
        from .. import mq

        return mq.wait(msg_id, timeout)


@pytest.fixture
def service_queue(request: pytest.FixtureRequest, tmp_path: Path
                  ) -> Iterator[Callable[..., ServiceQueue]]:
    """``service_queue("core")`` -> a :class:`ServiceQueue` whose consumer serves every
    topic of the service (what ``BUTTERFLY_CONSUME=1`` runs), on the private Redis."""
    started: list[Any] = []

    def start(name: str, **env: Any) -> ServiceQueue:
        from ..consumer import build_consumer
        from ..serve import prepare
        from ..service import get_service
        from ..settings import load_settings

        service = get_service(name)
        base = {"BUTTERFLY_LOG_DIR": str(tmp_path / "log"),
                "BUTTERFLY_DATA_DIR": str(tmp_path / "data"),
                "BUTTERFLY_CONSUME_MAX_IDLE": "0.05"}
        settings = load_settings(_env(request, base, env), default_port=service.port)
        prepare(service, settings)  # what `butterfly serve` does first: config, setup
        consumer = build_consumer(service, settings).start()
        started.append(consumer)
        return ServiceQueue(consumer)

    yield start
    for consumer in reversed(started):
        consumer.stop()


#: The stub's processes have no Redis: a handler that reaches for one anyway fails at
#: once (connection refused) instead of touching the machine's Redis on 6379. Pass
#: ``BUTTERFLY_REDIS_URL=redis_server.url`` for handlers that need a real one.
NO_REDIS_URL = "redis://127.0.0.1:1/0"


@pytest.fixture
def stub_broker(tmp_path: Path) -> Iterator[Callable[..., StubBroker]]:
    """``stub_broker("core", **env)`` -> a StubBroker serving every topic of service
    ``core`` (a name or a Service) in this process; ``stub_broker()`` -> one serving
    nothing (publish with ``force``). ``mq.publish`` and friends use the last one built
    until the test ends."""
    from ..mq.client import stand_in
    from .stub_broker import StubBroker

    with contextlib.ExitStack() as stack:
        def build(service: Service | str | None = None, **env: Any) -> StubBroker:
            from ..service import get_service
            from ..settings import load_settings

            stub = StubBroker()
            if service is not None:
                if isinstance(service, str):
                    service = get_service(service)
                values = {"BUTTERFLY_LOG_DIR": str(tmp_path / "log"),
                          "BUTTERFLY_DATA_DIR": str(tmp_path / "data"),
                          "BUTTERFLY_REDIS_URL": NO_REDIS_URL, **env}
                settings = load_settings({k: str(v) for k, v in values.items()
                                          if v is not None}, default_port=service.port)
                stub.attach(service, settings)
            stack.enter_context(stand_in(stub))
            return stub

        yield build


@pytest.fixture
def callee() -> Iterator[Callee]:
    """A local HTTP server recording every call (see :class:`Callee`)."""
    with Callee() as server:
        yield server
