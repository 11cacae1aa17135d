"""Finding routes: every decorated function of every app package becomes ``/{app}/{name}``.

``<handlers>/<app>/__init__.py`` is one app. A function is a route only when a decorator
marked it and it is defined in that app's own package, so a helper imported from elsewhere
never becomes a public endpoint by accident.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from .decorators import HandlerSpec, spec_of
from .params import Binder


@dataclass(frozen=True)
class Route:
    """One endpoint: its path, the function, how it speaks and how it binds params."""

    path: str
    app: str
    name: str
    func: Callable[..., Any]
    spec: HandlerSpec
    binder: Binder

    @property
    def doc(self) -> str:
        return (self.func.__doc__ or "").strip()

    @property
    def is_topic(self) -> bool:
        """Served from the queue: JSON handlers that are neither admin nor write actions."""
        return (self.spec.kind == "api" and self.spec.topic and not self.spec.admin
                and not self.spec.write)


class DiscoveryError(RuntimeError):
    """A handler package is malformed (the message says which function and why)."""


def _routes_of(module: ModuleType, app: str, prefix: str) -> list[Route]:
    routes = []
    for name, obj in sorted(vars(module).items()):
        spec = spec_of(obj) if callable(obj) else None
        if spec is None or name.startswith("_"):
            continue
        if not getattr(obj, "__module__", "").startswith(module.__name__):
            continue  # imported from another package: not this app's route
        try:
            binder = Binder(obj)
        except TypeError as exc:
            raise DiscoveryError(str(exc)) from None
        routes.append(Route(f"{prefix}/{name}", app, name, obj, spec, binder))
    return routes


def discover(package: str) -> dict[str, Route]:
    """Import ``package`` and its direct sub-packages; return routes keyed by path."""
    root = importlib.import_module(package)
    routes = _routes_of(root, "", "")
    for info in sorted(pkgutil.iter_modules(root.__path__), key=lambda i: i.name):
        if not info.ispkg or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{package}.{info.name}")
        routes += _routes_of(module, info.name, f"/{info.name}")
    return {route.path: route for route in routes}
