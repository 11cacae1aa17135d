"""Process-wide resources built once from the settings: settings, Redis client, database.

Handlers call :func:`get_settings` / :func:`get_redis` rather than building clients, so a
process holds one connection pool per resource whatever number of handlers use it.
"""

from __future__ import annotations

import threading

from . import db, nesting
from .redis_client import RedisLike, make_redis
from .settings import Settings, load_settings

_lock = threading.Lock()
_settings: Settings | None = None
_redis: RedisLike | None = None


def configure(settings: Settings) -> None:
    """Install ``settings`` for this process and point the DB proxy at its database."""
    global _settings, _redis
    with _lock:
        _settings = settings
        _redis = None
        nesting.configure(settings.max_json_depth)
        db.init_db(settings.database_url)


def get_settings() -> Settings:
    """The settings installed by :func:`configure` (loaded from the environment if none)."""
    if _settings is None:
        configure(load_settings())
    assert _settings is not None
    return _settings


def get_redis() -> RedisLike:
    """The process's Redis client for ``BUTTERFLY_REDIS_URL`` (Redis, Twemproxy or Cluster)."""
    global _redis
    if _redis is None:
        settings = get_settings()
        with _lock:
            if _redis is None:
                _redis = make_redis(settings.redis_url, socket_timeout=settings.redis_timeout,
                                    retries=settings.redis_retries)
    return _redis
