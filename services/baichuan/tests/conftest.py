"""Fixtures: a baichuan app on the plugin's private ``redis_server``, a broker to play
consumer.

Each test starts from an empty Redis (the plugin's ``redis`` fixture: FLUSHALL on the
private server), so tests never see each other's topics; ``broker`` is the plugin's too.
"A live consumer" is a heartbeat written through the broker, and
"processing" is claim + complete through the broker: no consumer process is needed.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from baichuan_helpers import TOPIC, make_client
from flask.testing import FlaskClient

from butterfly_common.mq import Broker
from butterfly_common.testing import RedisServer


@pytest.fixture
def client(tmp_path: Path, redis_server: RedisServer, redis: Any) -> FlaskClient:
    return make_client(tmp_path, redis_server.url)


@pytest.fixture
def app_for(tmp_path: Path, redis_server: RedisServer, redis: Any) -> Callable[..., FlaskClient]:
    """Build a client with extra environment, e.g. ``app_for(BAICHUAN_MAX_WAIT="0.2")``."""
    return lambda **env: make_client(tmp_path, redis_server.url, **env)


@pytest.fixture
def served(broker: Broker) -> Callable[..., None]:
    """Make topics served by a live (heartbeating) consumer ``w1``."""
    def serve(*topics: str, worker: str = "w1") -> None:
        broker.heartbeat(worker, topics or (TOPIC,), {"host": "test", "pid": 1})
    return serve
