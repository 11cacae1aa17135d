"""The fleet definition (deploy/fleet.toml) as Python objects, shared by make run and compose."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FLEET_FILE = ROOT / "deploy" / "fleet.toml"


@dataclass(frozen=True)
class Instance:
    """One process of a service: ``butterfly serve <service>`` on ``port``."""

    service: str
    name: str
    port: int
    env: dict[str, str] = field(default_factory=dict)
    description: str = ""
    #: services this one calls over HTTP: compose gives it ``BUTTERFLY_<SVC>_URL`` of each
    calls: tuple[str, ...] = ()
    #: environment only in compose (container host names, paths inside the image)
    compose_env: dict[str, str] = field(default_factory=dict)

    @property
    def argv(self) -> list[str]:
        return ["butterfly", "serve", self.service]


@dataclass(frozen=True)
class Worker:
    """A queue consumer without HTTP (``butterfly worker <service>``): compose runs it as
    ``<service>-worker`` with no published port, so ``--scale`` can multiply it."""

    service: str
    env: dict[str, str] = field(default_factory=dict)
    description: str = ""

    @property
    def name(self) -> str:
        return f"{self.service}-worker"

    @property
    def argv(self) -> list[str]:
        return ["butterfly", "worker", self.service]


def load_workers(path: Path = FLEET_FILE) -> list[Worker]:
    """The ``[worker.<service>]`` tables: worker-only processes (compose only)."""
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    return [Worker(service, dict(spec.get("env", {})), spec.get("description", ""))
            for service, spec in data.get("worker", {}).items()]


def load_fleet(path: Path = FLEET_FILE) -> list[Instance]:
    """Every instance of every service, replicas numbered ``<svc>-2``, ``<svc>-3``..."""
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    instances = []
    for service, spec in data["service"].items():
        replicas = int(spec.get("replicas", 1))
        for k in range(1, replicas + 1):
            name = service if replicas == 1 else f"{service}-{k}"
            instances.append(Instance(service, name, int(spec["port"]) + k - 1,
                                      dict(spec.get("env", {})), spec.get("description", ""),
                                      tuple(spec.get("calls", ())),
                                      dict(spec.get("compose_env", {}))))
    return instances
