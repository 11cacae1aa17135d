"""Fixtures: a private redis-server, a fresh console app per test, users of each role."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from canghai_helpers import PASSWORD, close_db, make_app
from flask.testing import FlaskClient

from butterfly_common.mq import Broker
from butterfly_common.redis_client import make_redis
from butterfly_common.testing import RedisServer


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture
def redis(redis_server: RedisServer) -> Any:
    client = make_redis(redis_server.url)
    client.flushall()
    yield client
    client.close()


@pytest.fixture
def broker(redis: Any) -> Broker:
    return Broker(redis)


@pytest.fixture
def app_for(tmp_path: Path, redis_server: RedisServer, redis: Any) -> Iterator[Callable]:
    saved = {k: os.environ.get(k) for k in ("BUTTERFLY_SECRET_KEY", "BUTTERFLY_ENV")}
    yield lambda **env: make_app(tmp_path, redis_server.url, **env)
    close_db()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture
def app(app_for: Callable) -> Any:
    from butterfly_canghai import users

    application = app_for()
    for name, role in (("ada", "admin"), ("otto", "operator"), ("vera", "viewer")):
        users.add_user(name, PASSWORD, role)
    return application


@pytest.fixture
def client(app: Any) -> FlaskClient:
    return app.test_client()
