"""Services announce themselves in Redis, so the console finds the ones no fleet file names.

A service made with ``butterfly new`` runs beside the fleet without being in
``deploy/fleet.toml``; canghai still lists it, its routes and its traffic, because every
``butterfly serve`` process writes its instance's record into one Redis HASH
(:data:`KEY`, field ``<service>|<url>``): the service, the URL it is reached at, its
version, host and routes (path, kind, the role a write needs). It writes at start and every
:data:`INTERVAL` seconds; a reader (:func:`announced`) takes the records seen within
:data:`STALE` seconds and deletes those silent for :data:`FORGET`. One key and one command
each (HSET / HGETALL / HDEL), so it works through Twemproxy and on Redis Cluster; a Redis
outage only delays the next announcement, never the service.

``BUTTERFLY_ANNOUNCE`` is the URL announced: default ``http://<BUTTERFLY_HOST>:<port>``
(the host name when bound to every address), ``off`` announces nothing.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from .settings import Settings

if TYPE_CHECKING:
    from .discovery import Route
    from .service import Service, Starter

log = logging.getLogger("butterfly.announce")

KEY = "bf:services"
INTERVAL = 10.0
STALE = 3 * INTERVAL
FORGET = 86400.0
SEP = "|"
_ANY = ("", "0.0.0.0", "::", "[::]")


def announce_url(settings: Settings) -> str | None:
    """The URL this instance is reached at (None with ``BUTTERFLY_ANNOUNCE=off``)."""
    if settings.announce == "off":
        return None
    if settings.announce:
        return settings.announce
    host = settings.host if settings.host not in _ANY else socket.gethostname()
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # an IPv6 address in a URL
    return f"http://{host}:{settings.port}"


def route_rows(routes: Mapping[str, Route]) -> list[dict[str, Any]]:
    """Each route's path, kind (api / raw / download) and the role it needs (None: read)."""
    return sorted(({"path": r.path, "kind": r.spec.kind, "role": r.spec.role}
                   for r in routes.values()), key=lambda row: str(row["path"]))


def record(service: Service, settings: Settings, url: str,
           routes: Mapping[str, Route]) -> dict[str, Any]:
    from . import __version__

    return {"service": service.name, "url": url, "version": __version__,
            "description": service.description, "host": socket.gethostname(),
            "pid": os.getpid(), "routes": route_rows(routes), "seen": time.time()}


def announce(client: Any, entry: dict[str, Any]) -> None:
    """Write (or refresh) one instance's record."""
    entry = {**entry, "seen": time.time()}
    client.hset(KEY, f"{entry['service']}{SEP}{entry['url']}", json.dumps(entry))


def announced(client: Any, now: float | None = None) -> list[dict[str, Any]]:
    """The records of instances heard from within :data:`STALE` seconds, by service and
    URL; records silent for :data:`FORGET` are deleted on the way."""
    now = time.time() if now is None else now
    fresh, gone = [], []
    for field, raw in (client.hgetall(KEY) or {}).items():
        try:
            entry = json.loads(raw)
            seen = float(entry["seen"])
            ours = isinstance(entry["service"], str) and isinstance(entry["url"], str) \
                and entry["url"].startswith(("http://", "https://"))
        except (ValueError, TypeError, KeyError):
            ours = False
        if not ours:
            gone.append(field)  # not a record of ours: never probed or scraped
            continue
        if now - seen > FORGET:
            gone.append(field)
        elif now - seen <= STALE:
            fresh.append(entry)
    if gone:
        client.hdel(KEY, *gone)
    return sorted(fresh, key=lambda e: (str(e["service"]), str(e["url"])))


class Announcer:
    """The thread of one server process: announce now, then every :data:`INTERVAL`."""

    def __init__(self, redis: Callable[[], Any], entry: dict[str, Any],
                 interval: float = INTERVAL) -> None:
        self.redis, self.entry, self.interval = redis, entry, interval
        self._stop = threading.Event()
        self._failing = False
        self._thread = threading.Thread(target=self._loop, name="bf-announce", daemon=True)

    def start(self) -> Announcer:
        self._thread.start()
        return self

    def stop(self) -> None:
        # the record is left to go stale: the other workers of this instance still serve
        self._stop.set()
        self._thread.join(5)

    def once(self) -> bool:
        try:
            announce(self.redis(), self.entry)
        except Exception as exc:  # Redis down: the service serves on, announced later
            if not self._failing:
                log.warning("announcing %s at %s failed: %s: %s", self.entry["service"],
                            self.entry["url"], type(exc).__name__, exc)
            self._failing = True
            return False
        self._failing = False
        return True

    def _loop(self) -> None:
        self.once()
        while not self._stop.wait(self.interval):
            self.once()


def announce_starter(service: Service) -> Starter:
    """The starter ``butterfly serve`` adds to every service (see the module docstring)."""

    def start(settings: Settings) -> Callable[[], None] | None:
        from . import runtime

        url = announce_url(settings)
        current = runtime.current_runtime()
        if url is None or current is None:
            return None
        return Announcer(runtime.get_redis,
                         record(service, settings, url, current.routes)).start().stop

    return start
