"""The relational database: one peewee Database per process, from ``BUTTERFLY_DB_URL``.

Models bind to :data:`database` (a proxy) at import time; :func:`init_db` points it at the
configured database once settings are known. ``mysql://`` URLs get a connection pool, so
opening and closing per request costs a checkout, not a TCP handshake.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlsplit

import peewee
from playhouse.db_url import connect

#: Every service's models use ``class Meta: database = database``.
database = peewee.DatabaseProxy()

_POOLED = {"mysql": "mysql+pool", "postgres": "postgres+pool", "postgresql": "postgresql+pool"}
# synchronous=normal: in WAL mode a commit survives a process crash (SIGKILL); only an OS
# crash may lose the last ones. FULL fsyncs every commit, which a busy disk makes slow.
SQLITE_PRAGMAS = {"journal_mode": "wal", "busy_timeout": 5000, "foreign_keys": 1,
                  "synchronous": "normal"}
_POOL_DEFAULTS = {"max_connections": "32", "stale_timeout": "300", "timeout": "10"}


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
        # WAL lets readers and one writer work at once across gunicorn workers.
        return peewee.SqliteDatabase(str(path), pragmas=SQLITE_PRAGMAS)
    database_: peewee.Database = connect(_with_defaults(url))
    return database_


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
