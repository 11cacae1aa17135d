"""Fixtures: the runtime on a private redis-server and SQLite or a private MariaDB
database, engines in this process, and jobs added through the API code.

``redis_server``, ``mariadb_database`` and the recording HTTP ``callee`` come from the
butterfly pytest plugin (``butterfly_common.testing.plugin``). MariaDB tests get their own
database on 127.0.0.1:3306, dropped afterwards, so they never touch tables other tests
use; they fail (never skip) when MariaDB is not reachable.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from butterfly_common import db, runtime
from butterfly_common.redis_client import make_redis
from butterfly_common.settings import load_settings
from butterfly_common.testing import RedisServer
from butterfly_ruqi import jobs
from butterfly_ruqi.config import RuqiConfig
from butterfly_ruqi.engine import Engine
from butterfly_ruqi.models import MODELS


@pytest.fixture(params=["sqlite", "mysql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ruqi.db'}"
    return str(request.getfixturevalue("mariadb_database"))


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'ruqi.db'}"


def configure(redis_url: str, db_url: str, **extra: str) -> Any:
    env = {"BUTTERFLY_REDIS_URL": redis_url, "BUTTERFLY_DB_URL": db_url,
           "RUQI_TIMEZONE": "UTC", "RUQI_HTTP_ALLOW": "127.0.0.1", **extra}
    settings = load_settings(env)
    runtime.configure(settings)
    db.create_tables(MODELS)
    return settings


@pytest.fixture
def configure_runtime() -> Any:
    """``configure_runtime(redis_url, db_url, **RUQI_vars)``: install settings, make tables."""
    return configure


def _fresh(redis_server: RedisServer, url: str) -> Iterator[Any]:
    make_redis(redis_server.url).flushall()
    yield configure(redis_server.url, url)
    db.database.close()


@pytest.fixture
def env(redis_server: RedisServer, db_url: str) -> Iterator[Any]:
    """Runtime configured on a flushed Redis and an empty DB (SQLite and MariaDB)."""
    yield from _fresh(redis_server, db_url)


@pytest.fixture
def sqlite_env(redis_server: RedisServer, sqlite_url: str) -> Iterator[Any]:
    """As ``env`` on SQLite only, for tests about logic rather than the database."""
    yield from _fresh(redis_server, sqlite_url)


class Engines:
    """Several engines in this process, as separate replicas would be; all stopped at exit."""

    def __init__(self) -> None:
        self.engines: list[Engine] = []

    def start(self, n: int = 1, clock: Any = None, **overrides: Any) -> list[Engine]:
        """``clock``: the engines' epoch-seconds clock (a simulated one), default real."""
        cfg = RuqiConfig(**{"timezone": "UTC", "poll_interval": 0.1, "node_ttl": 1.0,
                            "workers": 8, **overrides})
        extra = {"clock": clock} if clock is not None else {}
        new = [Engine(runtime.get_redis(), cfg, **extra).start() for _ in range(n)]
        self.engines.extend(new)
        return new

    def stop_all(self) -> None:
        for engine in self.engines:
            if not engine.stopped:
                engine.stop(timeout=5)


@pytest.fixture
def engines() -> Iterator[Engines]:
    group = Engines()
    yield group
    group.stop_all()


def _add(job_id: str, cmd: str, rule: str = "1s", trigger: str = "interval",
         **opts: Any) -> dict[str, Any]:
    return jobs.add_job(trigger, job_id, "test", cmd, rule, jobs.Options(**opts))


@pytest.fixture
def add() -> Any:
    """``add(job_id, cmd, rule="1s", trigger="interval", **options)`` through the API code."""
    return _add
