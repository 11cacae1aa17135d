"""Fixtures: a fresh console app per test on the plugin's private redis-server (emptied
per test by the plugin's ``redis`` fixture; ``broker`` comes from the plugin too), with
users of each role."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from canghai_helpers import PASSWORD, close_db, make_app
from flask.testing import FlaskClient

from butterfly_common.testing import RedisServer


@pytest.fixture
def app_for(tmp_path: Path, redis_server: RedisServer, redis: Any) -> Iterator[Callable]:
    yield lambda **env: make_app(tmp_path, redis_server.url, **env)
    close_db()


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
