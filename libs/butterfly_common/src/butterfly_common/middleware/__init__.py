"""Middleware: ordered, stackable objects that see every call, publish, message and process.

In the spirit of Dramatiq's middleware and Temporal's interceptors. A middleware subclasses
:class:`Middleware` and overrides the hooks it needs; the :class:`Chain` calls only the hooks
a middleware overrides, so an unused hook costs nothing on the hot path.

Order (docs/architecture.md, "The middleware chain", draws it): *before* hooks run in chain
order, *after* hooks in reverse, like layers of an onion: the first middleware is the
outermost. The framework's own middleware (reqid context, role check, database close,
metrics, access log: :mod:`.defaults`) come first, then the service's
``Service(middleware=[...])``, then the ones ``BUTTERFLY_MIDDLEWARE`` names.

A *before* hook may raise :class:`~butterfly_common.Refusal` to refuse the call; an *after*
hook must not raise (what it raises is logged and dropped, so one broken middleware never
changes an answer that was already decided).
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import import_module
from typing import TYPE_CHECKING, Any

from ..config import SettingsError
from .base import HOOKS, Chain, Middleware

if TYPE_CHECKING:
    from ..service import Service
    from ..settings import Settings

_active = Chain()


def install(chain: Chain) -> None:
    """Make ``chain`` the process's chain (what ``mq.publish`` runs); build_runtime does."""
    global _active
    _active = chain


def active() -> Chain:
    """The process's chain: the running service's, or an empty one outside a service."""
    return _active


def load_named(spec: str, name: str = "BUTTERFLY_MIDDLEWARE") -> list[Middleware]:
    """The middleware named by ``spec``: comma-separated ``module:attr``, each a Middleware
    instance or a class (or factory) called with no arguments. SettingsError naming
    ``name`` when one cannot be loaded."""
    found: list[Middleware] = []
    for item in filter(None, (part.strip() for part in spec.split(","))):
        module_name, sep, attr = item.partition(":")
        if not sep or not module_name or not attr:
            raise SettingsError(f"{name}: {item!r} is not module:attr")
        try:
            obj = getattr(import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise SettingsError(f"{name}: cannot load {item!r}: {exc}") from None
        if isinstance(obj, type) or (callable(obj) and not isinstance(obj, Middleware)):
            obj = obj()
        if not isinstance(obj, Middleware):
            raise SettingsError(f"{name}: {item!r} is not a butterfly Middleware")
        found.append(obj)
    return found


def chain_for(service: Service, settings: Settings, redis: Any = None) -> Chain:
    """The chain of ``service`` under ``settings``: the framework's defaults, the service's
    own, then the ones the setting names (docs/architecture.md). ``redis``: the process's
    client or a callable returning it (the role check's JWT epochs)."""
    from ..tracing import middleware_for
    from .defaults import default_middleware

    extra: Sequence[Middleware] = load_named(settings.middleware) if settings.middleware else ()
    tracing = middleware_for(settings, service.name)  # [] unless OTEL_* asks for traces
    return Chain([*tracing, *default_middleware(settings, redis), *service.middleware,
                  *extra])


__all__ = ["HOOKS", "Chain", "Middleware", "active", "chain_for", "install", "load_named"]
