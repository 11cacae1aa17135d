"""Fixtures: a private redis-server (the plugin's ``redis_server``), SQLite or a private
MariaDB database, and an HTTP client for the wuxing app (werkzeug's test client over the
real Gateway).

MariaDB tests create their own database (``wuxing_t_<random>``) on 127.0.0.1:3306 and drop it
afterwards; they fail (never skip) when MariaDB is not reachable.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from wuxing_testlib import TOKEN, Api

from butterfly_common import db, runtime
from butterfly_common.redis_client import make_redis
from butterfly_common.settings import load_settings
from butterfly_common.testing import RedisServer, mariadb_database
from butterfly_wuxing import migrations


@pytest.fixture(params=["sqlite", "mysql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'wuxing.db'}"
    else:
        with mariadb_database("wuxing_t") as url:
            yield url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'wuxing.db'}"


def configure(redis_url: str, db_url: str, **extra: str) -> Any:
    env = {"BUTTERFLY_REDIS_URL": redis_url, "BUTTERFLY_DB_URL": db_url,
           "BUTTERFLY_ADMIN_TOKEN": TOKEN, "BUTTERFLY_LOG_DIR": "-", **extra}
    settings = load_settings(env, default_port=4200)
    runtime.configure(settings)
    migrations.migrate()
    return settings


def _fresh(redis_url: str, url: str, flush: bool = True, **extra: str) -> Iterator[Api]:
    if flush:  # (not through Twemproxy, which refuses FLUSHALL: its shards start empty)
        make_redis(redis_url).flushall()
    settings = configure(redis_url, url, **extra)
    yield Api(settings)
    if db.database.obj is not None and not db.database.is_closed():
        db.database.close()


@pytest.fixture
def api(redis_server: RedisServer, db_url: str) -> Iterator[Api]:
    """The wuxing app on a flushed Redis and an empty DB (SQLite and MariaDB)."""
    yield from _fresh(redis_server.url, db_url)


@pytest.fixture
def sqlite_api(redis_server: RedisServer, sqlite_url: str) -> Iterator[Api]:
    """As ``api`` on SQLite only, for logic that does not depend on the database."""
    yield from _fresh(redis_server.url, sqlite_url)


@pytest.fixture
def fresh() -> Any:
    """``with contextlib.contextmanager(fresh)(redis_url, db_url, **env) as api``."""
    return _fresh
