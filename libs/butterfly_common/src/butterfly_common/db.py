"""The relational database: one peewee Database per process, from ``BUTTERFLY_DB_URL``.

Models bind to :data:`database` (a proxy) at import time; :func:`init_db` points it at the
configured database once settings are known. Every database but ``:memory:`` gets a
connection pool, so opening and closing per call (the ``CloseDatabase`` middleware) costs a
checkout: for MySQL not a TCP handshake, for a SQLite file not a new connection and its
four pragmas (0.4 ms a call, measured: a fifth of xingqiao's time serving a map's notices).
Pooled connections never cross a fork: the idle ones are closed before ``os.fork()``
(gunicorn's workers), so a child opens its own.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlsplit

import peewee
from playhouse.db_url import connect
from playhouse.pool import PooledDatabase, PooledSqliteDatabase

#: Every service's models use ``class Meta: database = database``.
database = peewee.DatabaseProxy()

_POOLED = {"mysql": "mysql+pool", "postgres": "postgres+pool", "postgresql": "postgresql+pool"}
# synchronous=normal: in WAL mode a commit survives a process crash (SIGKILL); only an OS
# crash may lose the last ones. FULL fsyncs every commit, which a busy disk makes slow.
SQLITE_PRAGMAS = {"journal_mode": "wal", "busy_timeout": 5000, "foreign_keys": 1,
                  "synchronous": "normal"}
_POOL_DEFAULTS = {"max_connections": "32", "stale_timeout": "300", "timeout": "10"}
#: A SQLite file's connections never go stale (no server closes them).
_SQLITE_POOL = {"max_connections": 32, "timeout": 10}


def _with_defaults(url: str) -> str:
    """Swap plain MySQL/Postgres schemes for pooled ones and add pool defaults."""
    scheme, rest = url.split("://", 1)
    if scheme not in _POOLED:
        return url
    query = urlsplit(url).query
    given = {pair.split("=", 1)[0] for pair in query.split("&") if pair}
    extra = [f"{k}={v}" for k, v in _POOL_DEFAULTS.items() if k not in given]
    if extra:
        rest += ("&" if "?" in rest else "?") + "&".join(extra)
    return f"{_POOLED[scheme]}://{rest}"


def open_database(url: str) -> peewee.Database:
    """Open (lazily) the database at ``url``; SQLite files get their directory created."""
    if url.startswith("sqlite:///") and "?" not in url and url != "sqlite:///:memory:":
        path = Path(url.removeprefix("sqlite:///"))
        path.parent.mkdir(parents=True, exist_ok=True)
        # WAL lets readers and one writer work at once across gunicorn workers. A pooled
        # connection serves one thread at a time, but not always the one that opened it.
        pooled: peewee.Database = PooledSqliteDatabase(
            str(path), pragmas=SQLITE_PRAGMAS, check_same_thread=False, **_SQLITE_POOL)
        return pooled
    database_: peewee.Database = connect(_with_defaults(url))
    return database_


def _close_idle_before_fork() -> None:
    """A connection must not be shared by two processes (SQLite's locks, a MySQL socket):
    the pool's idle ones are closed before a fork, so the child opens its own."""
    db = database.obj
    if isinstance(db, PooledDatabase):
        db.close_idle()


os.register_at_fork(before=_close_idle_before_fork)


def init_db(url: str) -> peewee.Database:
    """Bind :data:`database` to ``url`` and return the real database."""
    db = open_database(url)
    database.initialize(db)
    return db


def create_tables(models: Iterable[type[peewee.Model]]) -> None:
    """Create the tables of ``models`` if they do not exist (safe from many processes)."""
    with database.connection_context():
        database.create_tables(list(models), safe=True)


def ping_db() -> None:
    """Raise if the database cannot answer ``SELECT 1``."""
    with database.connection_context():
        database.execute_sql("SELECT 1")
