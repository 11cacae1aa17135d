"""Who is calling, with which role, and may they: the one place every service checks it.

One role model for the fleet (see docs/security.md, "Roles"): ``viewer`` < ``operator`` <
``admin``. Every identity carries a role, wherever it comes from:

* ``Authorization: Bearer <BUTTERFLY_ADMIN_TOKEN>``: admin;
* ``Authorization: Bearer <BUTTERFLY_OPERATOR_TOKEN>``: operator;
* ``Authorization: Bearer <jwt>`` signed by huoyan with ``BUTTERFLY_SECRET_KEY``: the role
  in the token, while the user's epoch in Redis (``huoyan:ep:<user>``, written by canghai
  whenever it issues a token, bumped or deleted on a password / role change, removal or
  sign-out) still equals the token's ``ep``;
* a ``BUTTERFLY_TRUSTED_PROXIES`` peer's ``X-Username`` with ``X-Role`` (nginx forwards
  the role huoyan's verification answered); ``X-Username`` without a valid ``X-Role`` is a
  viewer.

A route declares the role it needs (``@api(write=True)``: operator, ``@api(admin=True)``
or ``role="admin"``: admin) and :func:`check_role` is the only check; a handler whose role
depends on a parameter calls :func:`require_role` with the same identity.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from . import retstat
from .settings import Network, Settings

if TYPE_CHECKING:
    from .request import Request

log = logging.getLogger("butterfly.auth")

ROLES = ("viewer", "operator", "admin")
RANK = {role: i for i, role in enumerate(ROLES)}
#: huoyan's JWTs: issuer and the one accepted algorithm (pinned: never "none", never RS/HS
#: confusion)
JWT_ISSUER = "butterfly"
JWT_ALGORITHM = "HS256"
EPOCH_PREFIX = "huoyan:ep:"


def epoch_key(username: str) -> str:
    """The Redis key holding a user's current token epoch (one key, any shard)."""
    return EPOCH_PREFIX + username


def has_role(role: str | None, needed: str) -> bool:
    """True when ``role`` is ``needed`` or above (viewer < operator < admin)."""
    return role is not None and RANK.get(role, -1) >= RANK[needed]


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


@dataclass(frozen=True)
class Identity:
    """Who the caller is: ``username`` (``-`` when unknown), ``role`` (None: anonymous)
    and ``via`` (``admin-token``, ``operator-token``, ``jwt``, ``proxy``, ``none``, or
    ``invalid`` for a bearer credential that matched nothing)."""

    username: str
    role: str | None
    via: str

    def can(self, role: str) -> bool:
        return has_role(self.role, role)


ANONYMOUS = Identity("-", None, "none")


class AdminRefusal(NamedTuple):
    """Why a caller may not run an action: HTTP status, stat and reason."""

    status: int
    stat: str
    reason: str


def bearer(headers: Mapping[str, str]) -> str:
    """The credential of ``Authorization: Bearer <x>``, the original admin pages'
    ``Authorization: Bearer: <x>``, or a bare ``Bearer: <x>`` header ('' if none)."""
    auth = (headers.get("Authorization") or "").strip()
    if auth[:7].lower() == "bearer:":
        return auth[7:].strip()
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip().removeprefix(":").strip()
    return (headers.get("Bearer") or "").strip()


def _same(given: str, token: str) -> bool:
    return bool(token) and hmac.compare_digest(given.encode(), token.encode())


def jwt_claims(key: str, token: str) -> dict[str, Any] | None:
    """The claims of a valid, unexpired huoyan token signed with ``key``, else None.

    ``ep`` (the user's epoch) and ``role`` are required: a token that cannot be revoked is
    not accepted."""
    if not key or token.count(".") != 2:
        return None
    import jwt  # only callers that send a JWT pay for the import

    try:
        claims = jwt.decode(token, key, algorithms=[JWT_ALGORITHM], issuer=JWT_ISSUER,
                            options={"require": ["exp", "iat", "username", "ep"]})
    except jwt.PyJWTError:
        return None
    if not isinstance(claims.get("username"), str) or not isinstance(claims.get("ep"), int):
        return None
    return claims


def _jwt_identity(token: str, settings: Settings, redis: Any) -> Identity | None:
    claims = jwt_claims(settings.secret_key, token)
    if claims is None:
        return None
    role = claims.get("role")
    if role not in RANK:
        return None
    username = claims["username"]
    try:
        current = (redis() if callable(redis) else redis).get(epoch_key(username))
    except Exception as exc:  # the epoch cannot be checked: the token is not believed
        log.warning("token of %s not checked: %s: %s", username, type(exc).__name__, exc)
        return None
    if current is None or str(claims["ep"]) != (current.decode() if isinstance(
            current, bytes) else str(current)):
        return None  # signed out, changed or removed since the token was issued
    return Identity(username, role, "jwt")


def identify(remote_addr: str | None, headers: Mapping[str, str], settings: Settings,
             redis: Any = None) -> Identity:
    """The caller's identity and role (see the module docstring); ``redis`` (a client or
    a callable returning one) is asked only for a JWT's epoch."""
    given = bearer(headers)
    if given:
        if _same(given, settings.admin_token):
            return Identity(_proxy_user(remote_addr, headers, settings) or "admin-token",
                            "admin", "admin-token")
        if _same(given, settings.operator_token):
            return Identity(_proxy_user(remote_addr, headers, settings) or "operator-token",
                            "operator", "operator-token")
        if _same(given, settings.read_token):
            return Identity("read-token", "viewer", "read-token")
        found = _jwt_identity(given, settings, redis) if settings.secret_key else None
        return found or Identity("-", None, "invalid")
    username = _proxy_user(remote_addr, headers, settings)
    if username:
        role = (headers.get("X-Role") or "").strip().lower()
        return Identity(username, role if role in RANK else "viewer", "proxy")
    return ANONYMOUS


def _proxy_user(remote_addr: str | None, headers: Mapping[str, str],
                settings: Settings) -> str:
    """The ``X-Username`` of a trusted proxy ('' when none or untrusted)."""
    if not is_trusted(remote_addr, settings.trusted_proxies):
        return ""
    name = (headers.get("X-Username") or "").strip()[:128]
    return "" if name == "-" else name


def check_role(identity: Identity, needed: str, settings: Settings) -> AdminRefusal | None:
    """None when ``identity`` holds ``needed`` or above, else the refusal to answer:
    403 when nothing could ever grant it, 401 without (valid) credentials, 403 with a
    role too low."""
    if identity.can(needed):
        return None
    if identity.role is not None:
        return AdminRefusal(403, retstat.ERR_FORBIDDEN,
                            f"needs role {needed} (you are {identity.role})")
    jwt_or_proxy = bool(settings.secret_key or settings.trusted_proxies)
    if needed == "admin" and not (settings.admin_token or jwt_or_proxy):
        return AdminRefusal(403, retstat.ERR_FORBIDDEN,
                            "admin actions are disabled: set BUTTERFLY_ADMIN_TOKEN (or "
                            "BUTTERFLY_SECRET_KEY / BUTTERFLY_TRUSTED_PROXIES for users)")
    if not (settings.admin_token or settings.operator_token or jwt_or_proxy):
        return AdminRefusal(403, retstat.ERR_FORBIDDEN,
                            "write actions are disabled: set BUTTERFLY_OPERATOR_TOKEN, "
                            "BUTTERFLY_ADMIN_TOKEN or BUTTERFLY_TRUSTED_PROXIES")
    if identity.via == "invalid":
        return AdminRefusal(401, retstat.ERR_UNAUTHORIZED, "invalid token")
    return AdminRefusal(401, retstat.ERR_UNAUTHORIZED,
                        f"authorization required (role {needed}): Authorization: Bearer "
                        "<token or huoyan JWT>, or X-Username and X-Role from a trusted "
                        "proxy")


#: the identities ``BUTTERFLY_READ_AUTH=token`` accepts: bearer credentials only
_BEARERS = ("admin-token", "operator-token", "read-token", "jwt")


def check_read(identity: Identity, settings: Settings) -> AdminRefusal | None:
    """None when the read policy (``BUTTERFLY_READ_AUTH``) lets ``identity`` call a route
    that needs no role, else the refusal (401)."""
    policy = settings.read_auth
    if policy == "open":
        return None
    if identity.via == "invalid":
        return AdminRefusal(401, retstat.ERR_UNAUTHORIZED, "invalid token")
    if policy == "token" and identity.via in _BEARERS:
        return None
    if policy == "signed-in" and identity.role is not None:
        return None
    what = ("Authorization: Bearer <read, operator or admin token, or huoyan JWT>"
            if policy == "token" else "a token, a huoyan JWT or a trusted proxy's user")
    return AdminRefusal(401, retstat.ERR_UNAUTHORIZED,
                        f"reads need an identity (BUTTERFLY_READ_AUTH={policy}): {what}")


def request_identity(req: Request, settings: Settings, redis: Any = None) -> Identity:
    """The identity of ``req`` (resolved once per request; queue calls are anonymous);
    ``redis`` as for :func:`identify`."""
    found = getattr(req, "identity", None)
    if found is None:
        remote = (req.wsgienv or {}).get("REMOTE_ADDR")
        if req.method == "QUEUE" or remote is None:
            found = ANONYMOUS
        else:
            found = identify(remote, req.headers, settings, redis)
            if found.via == "jwt":
                req.username = found.username  # the access log names the token's user
        req.identity = found
    return found
