"""What a service is: a name, a port, a handlers package and its background work.

Each service package exposes one :class:`Service` under the ``butterfly.services`` entry
point group, so the framework finds services without ever importing one by name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import import_module
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, Protocol

from .settings import Settings

if TYPE_CHECKING:
    from .middleware import Middleware

class ServiceConfig(Protocol):
    """What ``Service(config=...)`` takes: a (frozen dataclass) class with ``from_env``."""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Any:
        """Build from the environment (read the service's ``<ENV_PREFIX>_*`` variables);
        SettingsError naming a malformed one."""


#: Background work: started once per server process after fork, given the settings; it
#: returns a callable that stops it gracefully (or None when there is nothing to stop).
Starter = Callable[[Settings], Callable[[], None] | None]


@dataclass
class Service:
    """A Butterfly service: ``butterfly serve <name>`` runs it on ``port``."""

    name: str
    port: int
    handlers: str
    #: One line on what the service is for; the ``info.description`` of its OpenAPI.
    description: str = ""
    #: Background work started after fork in every server process (scheduler engines...).
    starters: list[Starter] = field(default_factory=list)
    #: Runs once per process before serving, e.g. to create tables.
    setup: Callable[[Settings], None] | None = None
    #: Adds the service's web pages (routes, static files) to a Flask app it is given,
    #: which serves the paths that are not handler routes (only then is Flask used).
    web: Callable[[Any], None] | None = None
    #: Prefix of the service's own variables (``RUQI`` -> ``RUQI_*``); default: the name.
    env_prefix: str = ""
    #: A frozen dataclass with ``from_env(env) -> Self`` (raising SettingsError naming the
    #: variable), read once with the settings from the environment they came from, and
    #: returned by ``runtime.get_config(cls)`` / ``runtime.service_config()``.
    config: type[ServiceConfig] | None = None
    #: The service's own middleware (:mod:`butterfly_common.middleware`), inside the
    #: framework's defaults and outside the ones ``BUTTERFLY_MIDDLEWARE`` names.
    middleware: list[Middleware] = field(default_factory=list)
    #: The service's one stat -> HTTP code map, for returned and raised stats alike; a
    #: handler's own ``@api(statuses=)`` and a Refusal's explicit ``http`` come first.
    statuses: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.env_prefix = (self.env_prefix or self.name).upper().rstrip("_")
        if self.config is not None and not callable(getattr(self.config, "from_env", None)):
            raise TypeError(f"service {self.name}: config {self.config!r} needs a "
                            "from_env(env) classmethod")

    def read_config(self, settings: Settings) -> Any:
        """The service's config from ``settings`` (SettingsError on a bad value), or None."""
        if self.config is None:
            return None
        return self.config.from_env(settings.env)


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
