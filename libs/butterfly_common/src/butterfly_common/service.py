"""What a service is: a name, a port, a handlers package and its background work.

Each service package exposes one :class:`Service` under the ``butterfly.services`` entry
point group, so the framework finds services without ever importing one by name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import import_module
from importlib.metadata import entry_points
from typing import Any

from .settings import Settings

#: Background work: started once per server process after fork, given the settings; it
#: returns a callable that stops it gracefully (or None when there is nothing to stop).
Starter = Callable[[Settings], Callable[[], None] | None]


@dataclass
class Service:
    """A Butterfly service: ``butterfly serve <name>`` runs it on ``port``."""

    name: str
    port: int
    handlers: str
    description: str = ""
    #: Background work started after fork in every server process (scheduler engines...).
    starters: list[Starter] = field(default_factory=list)
    #: Runs once per process before serving, e.g. to create tables.
    setup: Callable[[Settings], None] | None = None
    #: Adds the service's own Flask routes (pages, static files) to its app; handler
    #: routes still come first, Flask sees only the other paths.
    web: Callable[[Any], None] | None = None


class UnknownService(LookupError):
    """No installed package provides the named service."""


def installed_services() -> dict[str, Service]:
    """Every service registered under the ``butterfly.services`` entry point group."""
    found = {}
    for ep in entry_points(group="butterfly.services"):
        service = ep.load()
        found[service.name] = service
    return dict(sorted(found.items()))


def get_service(name: str) -> Service:
    """The installed service called ``name``, or ``package.module:attr`` for one that is not
    installed (handy for tests, benchmarks and trying a service out before packaging it)."""
    if ":" in name:
        module_name, _, attr = name.partition(":")
        try:
            service = getattr(import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise UnknownService(f"cannot load service {name!r}: {exc}") from None
        if not isinstance(service, Service):
            raise UnknownService(f"{name!r} is not a butterfly Service")
        return service
    services = installed_services()
    if name not in services:
        known = ", ".join(services) or "none installed"
        raise UnknownService(f"unknown service {name!r} (known: {known})")
    return services[name]
