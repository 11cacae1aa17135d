"""Where HTTP jobs may go: ``RUQI_HTTP_ALLOW``, checked on the name AND the resolved address.

Without a check an HTTP job is a server-side request forgery with read-back: anyone able to
add a job could make ruqi POST to an admin port on 127.0.0.1 or a cloud metadata address and
read the answer in the history. So a target must match an entry of the allow-list:

* ``host`` / ``host:port`` - an exact name; ``*.example.com[:port]`` - any sub-domain;
* ``10.0.0.0/8``, ``192.168.1.5``, ``[::1]:8080``, ``fd00::/8`` - addresses (any port, or the
  one given), matched against the URL's IP literal or what a name resolves to;
* ``fleet`` - the fleet's own services (the default when the setting is unset): the host and
  port of each ``BUTTERFLY_<SVC>_URL`` that is set, else ``127.0.0.1:<port>`` and
  ``localhost:<port>`` of every installed service.

A name is resolved and EVERY address it resolves to must be public, or covered by an address
entry: a listed name whose DNS answer turns into 127.0.0.1 or 169.254.169.254 is refused.
Only the fleet's own entries (from configuration, e.g. ``http://core:8585`` in compose, which
resolves to a private address) are exempt. The check runs when a job is saved and again on
every fire, and the connected socket's peer address is checked once more (DNS rebinding).

The decisions that depend on the entries alone (an IP literal's port and network, a connected
address) are remembered per ``AllowList``: at hundreds of fires a second, parsing the same
address again was a noticeable share of a fire's CPU. A name's DNS answer is never cached.
"""

from __future__ import annotations

import fnmatch
import functools
import ipaddress
import logging
import os
import re
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from urllib.parse import urlsplit

from butterfly_common import Refusal

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], list[str]]

log = logging.getLogger("butterfly.ruqi")

ERR_HTTP_NOT_ALLOWED = "ERR_HTTP_NOT_ALLOWED"
_NAME = re.compile(r"^(\*\.)?[a-z0-9_]([a-z0-9_.-]*[a-z0-9_])?$")


class AllowListError(ValueError):
    """A malformed ``RUQI_HTTP_ALLOW`` entry (the message names it)."""


@dataclass(frozen=True)
class Entry:
    """One allow-list entry: a host pattern or a network, optionally one port."""

    pattern: str | None = None
    network: Network | None = None
    port: int | None = None
    #: From the fleet's own configuration: its names may resolve to private addresses.
    fleet: bool = False

    def port_ok(self, port: int) -> bool:
        return self.port is None or self.port == port


def _port(text: str, entry: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise AllowListError(f"RUQI_HTTP_ALLOW: {entry!r} has a bad port")
    return int(text)


def parse_entry(entry: str, fleet: bool = False) -> Entry:
    """``host[:port]``, ``*.domain[:port]``, ``ip[:port]``, ``[v6][:port]`` or a CIDR."""
    text = entry.strip().lower()
    try:
        return Entry(network=ipaddress.ip_network(text, strict=False), fleet=fleet)
    except ValueError:
        pass
    host, port = text, None
    if text.startswith("["):
        inner, _, rest = text[1:].partition("]")
        host = inner
        if rest:
            if not rest.startswith(":"):
                raise AllowListError(f"RUQI_HTTP_ALLOW: {entry!r} is not host[:port]")
            port = _port(rest[1:], entry)
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
        port = _port(port_text, entry)
    try:
        return Entry(network=ipaddress.ip_network(host, strict=False), port=port, fleet=fleet)
    except ValueError:
        pass
    if not _NAME.match(host):
        raise AllowListError(f"RUQI_HTTP_ALLOW: {entry!r} is not a host name, address or CIDR")
    return Entry(pattern=host, port=port, fleet=fleet)


def fleet_entries(env: Mapping[str, str]) -> list[Entry]:
    """The fleet's own services: each ``BUTTERFLY_<SVC>_URL``, else its local port."""
    found: list[Entry] = []
    for name, port in _fleet_ports().items():
        url = (env.get(f"BUTTERFLY_{name.upper()}_URL") or "").strip()
        if url:
            parts = urlsplit(url)
            if parts.hostname:
                default = 443 if parts.scheme == "https" else 80
                found.append(parse_entry(f"[{parts.hostname}]:{parts.port or default}"
                                         if ":" in parts.hostname else
                                         f"{parts.hostname}:{parts.port or default}", True))
            continue
        found += [parse_entry(f"127.0.0.1:{port}", True),
                  parse_entry(f"localhost:{port}", True)]
    return found


def _fleet_ports() -> dict[str, int]:
    """name -> port of every installed service; one that fails to load is left out."""
    ports = {}
    for ep in entry_points(group="butterfly.services"):
        try:
            service = ep.load()
            ports[service.name] = int(service.port)
        except Exception:
            log.exception("service entry point %s does not load; not in the fleet", ep.name)
    return ports


def parse_allow(raw: str | None, env: Mapping[str, str]) -> tuple[Entry, ...]:
    """The entries of ``RUQI_HTTP_ALLOW`` (unset or blank: ``fleet``)."""
    items = [i.strip() for i in (raw or "").split(",") if i.strip()] or ["fleet"]
    entries: list[Entry] = []
    for item in items:
        entries += fleet_entries(env) if item.lower() == "fleet" else [parse_entry(item)]
    return tuple(entries)


def _special(ip: IPAddress) -> bool:
    """Loopback, private, link-local (cloud metadata), unspecified, reserved, multicast."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast


def system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})


#: Remembered decisions per AllowList (then forgotten all at once: a bound, not an LRU).
MEMO_SIZE = 4096


@functools.lru_cache(maxsize=MEMO_SIZE)
def _url_target(url: str) -> tuple[str, int]:
    """``(host, port)`` of an http(s) URL (text alone); Refusal(ERR_BAD_CMD) when bad."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Refusal("ERR_BAD_CMD", f"{url[:100]!r} is not an http(s) URL with a host")
    if parts.username is not None or parts.password is not None:
        raise Refusal("ERR_BAD_CMD", "credentials in the URL would be shown to anyone "
                      "reading the job; the target must not need them")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise Refusal("ERR_BAD_CMD", f"{url[:100]!r} has a bad port") from None
    return parts.hostname.lower(), port


class AllowList:
    """Decides whether ``ruqi`` may send an HTTP request to a URL or a connected peer."""

    def __init__(self, entries: tuple[Entry, ...],
                 resolver: Resolver = system_resolver) -> None:
        self.entries = entries
        self.resolver = resolver
        #: (host, port, address or "") -> the refusal's reason, None when allowed: the
        #: decisions that depend on the entries only (see the module doc)
        self._memo: dict[tuple[str, int, str], str | None] = {}

    def _remember(self, key: tuple[str, int, str], reason: str | None) -> None:
        if len(self._memo) >= MEMO_SIZE:
            self._memo.clear()
        self._memo[key] = reason

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> AllowList:
        env = os.environ if env is None else env
        return cls(parse_allow(env.get("RUQI_HTTP_ALLOW"), env))

    def _covered(self, ip: IPAddress, port: int) -> bool:
        return any(e.network is not None and e.port_ok(port) and ip in e.network
                   for e in self.entries)

    def _named(self, host: str, port: int) -> Entry | None:
        for e in self.entries:
            if e.pattern and e.port_ok(port) and fnmatch.fnmatchcase(host, e.pattern):
                return e
        return None

    def check_url(self, url: str) -> None:
        """Refusal(ERR_HTTP_NOT_ALLOWED) unless ``url`` may be called now."""
        self.check_host(*_url_target(url))

    def check_host(self, host: str, port: int) -> None:
        where = f"{host}:{port}"
        key = (host, port, "")
        if key in self._memo:  # an IP literal decided before
            reason = self._memo[key]
            if reason is not None:
                raise Refusal(ERR_HTTP_NOT_ALLOWED, reason)
            return
        try:
            literal: IPAddress | None = ipaddress.ip_address(host)
        except ValueError:
            literal = None
        if literal is not None:
            reason = (None if self._covered(literal, port)
                      else f"HTTP target {where} is not in RUQI_HTTP_ALLOW")
            self._remember(key, reason)
            if reason is not None:
                raise Refusal(ERR_HTTP_NOT_ALLOWED, reason)
            return
        entry = self._named(host, port)
        if entry is None:
            raise Refusal(ERR_HTTP_NOT_ALLOWED, f"HTTP target {where} is not in RUQI_HTTP_ALLOW")
        if entry.fleet:
            return
        try:
            addresses = self.resolver(host, port)
        except OSError as exc:
            raise Refusal(ERR_HTTP_NOT_ALLOWED,
                          f"HTTP target {host} does not resolve: {exc}") from None
        for text in addresses:
            self.check_peer(host, port, text)

    def check_peer(self, host: str, port: int, address: str) -> None:
        """A name's (or connected socket's) address: public, or covered by an entry."""
        key = (host, port, address)
        if key in self._memo:
            reason = self._memo[key]
        else:
            reason = self._peer_refusal(host, port, address)
            self._remember(key, reason)
        if reason is not None:
            raise Refusal(ERR_HTTP_NOT_ALLOWED, reason)

    def _peer_refusal(self, host: str, port: int, address: str) -> str | None:
        """Why ``address`` may not be called as ``host:port`` (None: it may); depends on
        the entries alone."""
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if self._covered(ip, port):
            return None
        entry = self._named(host, port)
        if entry is not None and entry.fleet:
            return None
        if entry is None or _special(ip):
            return (f"HTTP target {host}:{port} resolves to {ip}, a loopback/private "
                    "address not listed in RUQI_HTTP_ALLOW")
        return None
