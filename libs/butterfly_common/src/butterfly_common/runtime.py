"""Process-wide resources built once from the settings: settings, Redis, database, config.

Handlers call :func:`get_settings` / :func:`get_redis` / :func:`get_config` rather than
building clients or parsing variables, so a process holds one connection pool per resource
and one validated config per service, whatever number of handlers use them.

:class:`ServiceRuntime` is what one service needs to answer calls (its routes, the
Gateway with its hooks, its config); :func:`build_runtime` makes it once per process and
``create_app``, the queue consumer and engine-only processes (``python -m butterfly_ruqi``)
all share it.

This module sits below ``mq``: the queue client builds the process's broker over
:func:`get_redis`, so nothing here imports ``mq`` (``mq.broker()`` is the process's
broker; a service's runtime does not carry one).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, TypeVar

from . import db, nesting
from .redis_client import RedisLike, make_redis
from .settings import Settings, load_settings

if TYPE_CHECKING:
    from .discovery import Route
    from .gateway import Gateway
    from .service import Service

C = TypeVar("C")

_lock = threading.RLock()
_settings: Settings | None = None
_redis: RedisLike | None = None
#: The config cache: one validated instance per config class, dropped by configure().
_configs: dict[type, Any] = {}
_runtime: ServiceRuntime | None = None


def configure(settings: Settings) -> None:
    """Install ``settings`` for this process and point the DB proxy at its database."""
    global _settings, _redis, _runtime
    with _lock:
        if settings is not _settings:
            _configs.clear()
            _runtime = None
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
                                    retries=settings.redis_retries,
                                    watch_sockets=settings.fastpath_breaker_socket)
    return _redis


def load_config(service: Service) -> Any:
    """Read and validate ``service``'s declared config from the current settings, once.

    Raises SettingsError naming the variable; a service without ``config`` gives None.
    """
    if service.config is None:
        return None
    settings = get_settings()
    with _lock:
        if service.config not in _configs:
            _configs[service.config] = service.read_config(settings)
        return _configs[service.config]


def get_config(cls: type[C]) -> C:
    """The validated instance of ``cls`` (any class with ``from_env(env)``) for this
    process's settings, built from the environment they were read from.

    A service's declared config is read at start (``create_app`` / the consumer /
    ``butterfly serve``); any other such class (a part of a service's settings kept in its
    own module) on first use. Either way once per settings: the one config cache.
    """
    hit = _configs.get(cls)
    if hit is not None:
        return hit  # type: ignore[no-any-return]
    from_env = getattr(cls, "from_env", None)
    if not callable(from_env):
        raise TypeError(f"{cls.__name__} has no from_env(env) classmethod")
    settings = get_settings()
    with _lock:
        if cls not in _configs:
            _configs[cls] = from_env(settings.env)
        return _configs[cls]  # type: ignore[no-any-return]


def service_config() -> Any:
    """The config of the service this process runs (None when it declares none)."""
    if _runtime is None:
        raise RuntimeError("service_config() before build_runtime(): no service is running")
    return load_config(_runtime.service)


@dataclass
class ServiceRuntime:
    """One service's call machinery in this process: routes, Gateway, config, resources."""

    service: Service
    settings: Settings
    config: Any
    routes: dict[str, Route]
    gateway: Gateway

    @property
    def redis(self) -> RedisLike:
        return get_redis()

    @property
    def database(self) -> Any:
        """The peewee database proxy every model binds to."""
        return db.database


def build_runtime(service: Service, settings: Settings | None = None) -> ServiceRuntime:
    """Configure the process for ``service`` and build its runtime (once per settings).

    Validates the service's config (SettingsError naming the variable) before anything
    is served; a second call with the same settings returns the same runtime.
    """
    global _runtime
    from .discovery import discover
    from .gateway import Gateway
    from .middleware import chain_for, install
    from .protocol import ProtocolSettings

    if settings is not None:
        configure(settings)  # fresh clients, e.g. in a worker after fork
    settings = get_settings()
    with _lock:
        if (_runtime is not None and _runtime.service is service
                and _runtime.settings is settings):
            return _runtime
        config = load_config(service)
        conf = ProtocolSettings(settings.legacy_status, settings.stat_adaptor)
        chain = chain_for(service, settings, get_redis)  # SettingsError: BUTTERFLY_MIDDLEWARE
        install(chain)  # what mq.publish runs in this process
        gateway = Gateway(conf, settings.download_root, chain)
        routes = with_statuses(discover(service.handlers), service.statuses)
        _runtime = ServiceRuntime(service, settings, config, routes, gateway)
        return _runtime


def with_statuses(routes: dict[str, Route], statuses: Mapping[str, int]) -> dict[str, Route]:
    """``routes`` with the service's stat -> HTTP map under each handler's own, so a
    returned and a raised stat answer the same code (and the OpenAPI lists it)."""
    if not statuses:
        return routes
    return {path: replace(route, spec=replace(route.spec,
                                              statuses={**statuses, **route.spec.statuses}))
            for path, route in routes.items()}


def current_runtime() -> ServiceRuntime | None:
    """The runtime :func:`build_runtime` made last in this process, if any."""
    return _runtime
