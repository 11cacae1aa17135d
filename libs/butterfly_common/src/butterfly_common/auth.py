"""Who is calling: client identity behind trusted proxies, and the admin / write checks.

Two levels guard actions (see the README's "Write authorization"):

* admin (``@api(admin=True)``: log level, stack dumps, destructive queue actions) needs
  ``Authorization: Bearer <BUTTERFLY_ADMIN_TOKEN>``;
* write (``@api(write=True)``: ruqi's job control, ...) accepts the admin token, the
  operator token (``BUTTERFLY_OPERATOR_TOKEN``) or a user a trusted proxy authenticated
  (``X-Username`` from a ``BUTTERFLY_TRUSTED_PROXIES`` peer, e.g. nginx with huoyan's
  ``auth_request``), because the original admin pages behind such a proxy send no token.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Mapping
from typing import NamedTuple

from . import retstat
from .settings import Network


def is_trusted(remote_addr: str | None, proxies: tuple[Network, ...]) -> bool:
    """True when the direct peer is one of the configured proxies."""
    if not remote_addr or not proxies:
        return False
    try:
        addr = ipaddress.ip_address(remote_addr)
    except ValueError:
        return False
    return any(addr in net for net in proxies)


def client_identity(remote_addr: str | None, headers: Mapping[str, str],
                    proxies: tuple[Network, ...]) -> tuple[str, str]:
    """``(ip, username)``; ``X-Real-IP``/``X-Username`` count only from a trusted proxy.

    Anyone can send those headers, so from any other peer they are ignored: the ip is the
    peer's address and the user is ``-``.
    """
    ip = remote_addr or "0.0.0.0"
    if not is_trusted(remote_addr, proxies):
        return ip, "-"
    forwarded = headers.get("X-Forwarded-For", "")
    ip = (headers.get("X-Real-IP") or forwarded.split(",")[-1].strip() or ip)[:64]
    return ip, (headers.get("X-Username") or "-")[:128]


class AdminRefusal(NamedTuple):
    """Why a caller may not run an admin action: HTTP status, stat and reason."""

    status: int
    stat: str
    reason: str


def _bearer(authorization: str | None) -> str:
    scheme, _, given = (authorization or "").partition(" ")
    return given.strip() if scheme.lower() == "bearer" else ""


def _same(given: str, token: str) -> bool:
    return bool(token) and hmac.compare_digest(given.encode(), token.encode())


def check_write(authorization: str | None, username: str, admin_token: str,
                operator_token: str, proxies: tuple[Network, ...]) -> AdminRefusal | None:
    """None when the caller may run a write action, else the refusal to answer.

    ``username`` is what :func:`client_identity` found: ``-`` unless a trusted proxy sent
    ``X-Username``. With no token and no trusted proxy configured, writes are off (403).
    """
    given = _bearer(authorization)
    if given and (_same(given, admin_token) or _same(given, operator_token)):
        return None
    if username and username != "-":
        return None  # only set when the peer is a trusted proxy
    if not (admin_token or operator_token or proxies):
        return AdminRefusal(403, retstat.ERR_FORBIDDEN,
                            "write actions are disabled: set BUTTERFLY_OPERATOR_TOKEN, "
                            "BUTTERFLY_ADMIN_TOKEN or BUTTERFLY_TRUSTED_PROXIES")
    if given:
        return AdminRefusal(401, retstat.ERR_UNAUTHORIZED, "invalid token")
    return AdminRefusal(401, retstat.ERR_UNAUTHORIZED,
                        "authorization required: Authorization: Bearer <operator or admin "
                        "token>, or X-Username from a trusted proxy")


def check_admin(authorization: str | None, token: str) -> AdminRefusal | None:
    """None when the caller holds the admin token, else the refusal to answer.

    With no token configured, admin actions are off for everyone (403); a missing or
    wrong token is 401.
    """
    if not token:
        return AdminRefusal(403, retstat.ERR_FORBIDDEN,
                            "admin actions are disabled: set BUTTERFLY_ADMIN_TOKEN")
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        return AdminRefusal(401, retstat.ERR_UNAUTHORIZED,
                            "admin token required: Authorization: Bearer <token>")
    if not hmac.compare_digest(given.strip().encode(), token.encode()):
        return AdminRefusal(401, retstat.ERR_UNAUTHORIZED, "invalid admin token")
    return None
