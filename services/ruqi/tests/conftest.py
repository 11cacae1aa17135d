"""Fixtures: a private redis-server, SQLite or a private MariaDB database, a tiny HTTP callee.

MariaDB tests create their own database (``ruqi_t_<random>``) on 127.0.0.1:3306 and drop it
afterwards, so they never touch tables other tests use; they are skipped when MariaDB is
not reachable.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from butterfly_common import db, runtime
from butterfly_common.redis_client import make_redis
from butterfly_common.settings import load_settings
from butterfly_common.testing import RedisServer, mariadb_database
from butterfly_ruqi import jobs
from butterfly_ruqi.config import RuqiConfig
from butterfly_ruqi.engine import Engine
from butterfly_ruqi.models import MODELS

MYSQL_HOST, MYSQL_PORT = "127.0.0.1", 3306


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture(params=["sqlite", "mysql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'ruqi.db'}"
    else:
        with mariadb_database("ruqi_t", MYSQL_HOST, MYSQL_PORT) as url:
            yield url


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

    def start(self, n: int = 1, **overrides: Any) -> list[Engine]:
        cfg = RuqiConfig(timezone="UTC", poll_interval=0.1, node_ttl=1.0,
                         **{"workers": 8, **overrides})
        new = [Engine(runtime.get_redis(), cfg).start() for _ in range(n)]
        self.engines.extend(new)
        return new

    def stop_all(self) -> None:
        for engine in self.engines:
            if not engine._stopping.is_set():
                engine.stop(timeout=5)


@pytest.fixture
def engines() -> Iterator[Engines]:
    group = Engines()
    yield group
    group.stop_all()


class Callee:
    """A real local HTTP server that records every call ruqi makes to it."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.active = 0
        self.max_active = 0
        self._lock = threading.Lock()
        callee = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                parts = urlsplit(self.path)
                query = parse_qs(parts.query)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with callee._lock:
                    callee.active += 1
                    callee.max_active = max(callee.max_active, callee.active)
                    callee.calls.append({
                        "path": parts.path, "job": self.headers.get("x-ruqi-job"),
                        "ms": int(self.headers.get("x-ruqi-scheduled") or 0),
                        "reqid": self.headers.get("x-reqid"), "body": body.decode(),
                        "at": time.time()})
                try:
                    time.sleep(float(query.get("sleep", ["0"])[0]))
                    status = int(query.get("status", ["200"])[0])
                    stat = query.get("stat", ["OK"])[0]
                    payload = json.dumps({"stat": stat}).encode()
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the caller was killed mid-request (crash tests)
                finally:
                    with callee._lock:
                        callee.active -= 1

        class Server(ThreadingHTTPServer):
            request_queue_size = 256  # bursts of simultaneous fires must not be refused

        self.server = Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def of(self, job: str) -> list[dict[str, Any]]:
        with self._lock:
            return [c for c in self.calls if c["job"] == job]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def callee() -> Iterator[Callee]:
    server = Callee()
    yield server
    server.close()


def _add(job_id: str, cmd: str, rule: str = "1s", trigger: str = "interval",
         **opts: Any) -> dict[str, Any]:
    return jobs.add_job(trigger, job_id, "test", cmd, rule, jobs.Options(**opts))


@pytest.fixture
def add() -> Any:
    """``add(job_id, cmd, rule="1s", trigger="interval", **options)`` through the API code."""
    return _add
