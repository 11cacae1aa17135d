"""The fleet the console watches and its ``/healthz`` + ``/readyz`` state, probed in
parallel with short timeouts.

Its instances: those of fleet.toml (or, without one, of the installed services), plus those
of every other service that announces itself in Redis (``butterfly_common.announce``: each
``butterfly serve`` does), e.g. a user's own service made with ``butterfly new``. The
fleet file stays the authority on the services it names; announcements add the others."""

from __future__ import annotations

import logging
import time
import tomllib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

from butterfly_common import announce

from .config import CanghaiConfig

log = logging.getLogger("butterfly.canghai.fleet")


@dataclass(frozen=True)
class Instance:
    service: str
    name: str
    url: str
    #: found through its announcement, not the fleet file (or the installed services)
    announced: bool = False


def _url(cfg: CanghaiConfig, service: str, name: str, port: int, replica: int) -> str:
    from butterfly_common.runtime import get_settings

    override = get_settings().service_urls.get(service, "").strip()
    if override and replica == 1:
        return override.rstrip("/")
    host = cfg.fleet_host.replace("{name}", name)
    return f"http://{host}:{port}"


def instances(cfg: CanghaiConfig) -> list[Instance]:
    """Every instance of every service: replicas of fleet.toml numbered ``svc-2``...,
    then the announced instances of services the fleet does not name
    (``<service>@<host:port>``)."""
    listed = _listed(cfg)
    known = {inst.service for inst in listed}
    extra = [Instance(str(e["service"]), f"{e['service']}@{urlsplit(str(e['url'])).netloc}",
                      str(e["url"]), announced=True)
             for e in announcements() if e["service"] not in known]
    return listed + extra


def announcements() -> list[dict[str, Any]]:
    """The fresh announcements of every service (none while Redis cannot be read)."""
    from butterfly_common.runtime import get_redis

    try:
        return announce.announced(get_redis())
    except Exception as exc:  # Redis down: the fleet file's instances still show
        log.warning("announcements not read: %s: %s", type(exc).__name__, exc)
        return []


def _listed(cfg: CanghaiConfig) -> list[Instance]:
    """The instances of the fleet file, else of the installed services."""
    path = Path(cfg.fleet_file) if cfg.fleet_file else Path("deploy/fleet.toml")
    if path.is_file():
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        out = []
        for service, spec in data.get("service", {}).items():
            replicas = int(spec.get("replicas", 1))
            for k in range(1, replicas + 1):
                name = service if replicas == 1 else f"{service}-{k}"
                port = int(spec["port"]) + k - 1
                out.append(Instance(service, name, _url(cfg, service, name, port, k)))
        return out
    from butterfly_common.service import installed_services

    return [Instance(s.name, s.name, _url(cfg, s.name, s.name, s.port, 1))
            for s in installed_services().values()]


def _probe(inst: Instance, timeout: float) -> dict[str, Any]:
    row: dict[str, Any] = {"service": inst.service, "name": inst.name, "url": inst.url,
                           "announced": inst.announced, "ready": False, "state": "down",
                           "version": "-", "detail": ""}
    started = time.perf_counter()
    try:
        health = requests.get(f"{inst.url}/healthz", timeout=timeout)
        if health.ok:
            row["version"] = str(health.json().get("version", "-"))
        ready = requests.get(f"{inst.url}/readyz", timeout=timeout)
        row["ready"] = ready.status_code == 200
        row["state"] = "ready" if row["ready"] else "not ready"
        if not row["ready"]:
            row["detail"] = ready.headers.get("x-reason", "")[:200]
    except (requests.RequestException, ValueError) as exc:
        row["detail"] = type(exc).__name__
    row["ms"] = round((time.perf_counter() - started) * 1000, 1)
    return row


_cache: tuple[float, list[dict[str, Any]]] | None = None


def probe_all(cfg: CanghaiConfig, max_age: float = 3.0) -> list[dict[str, Any]]:
    """State of every instance (cached ``max_age`` seconds: pages poll it)."""
    global _cache
    if _cache is not None and time.monotonic() - _cache[0] < max_age:
        return _cache[1]
    insts = instances(cfg)
    if not insts:
        return []
    with ThreadPoolExecutor(max_workers=min(16, len(insts))) as pool:
        rows = list(pool.map(lambda i: _probe(i, cfg.probe_timeout), insts))
    _cache = (time.monotonic(), rows)
    return rows
