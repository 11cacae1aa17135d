"""Who is asking, and may they: one identity from a session, a JWT, the fleet's tokens or
a trusted proxy's ``X-Username``, and role checks done on the server for every action.

Roles: ``viewer`` reads, ``operator`` requeues / runs / pauses / retries, ``admin``
deletes, purges and manages users. A session is honoured for writes only with its CSRF
token (form field or ``X-CSRF-Token`` header).

API calls follow the fleet's rule (``butterfly_common.auth``): the operator and read
tokens are roles as at every service, and a trusted proxy's ``X-Username`` is a caller
whether or not canghai keeps that user (an SSO in front of the fleet, a huoyan with its
own user store): its role is the proxy's ``X-Role``, no ``X-Role`` a viewer. A user
canghai does know is still capped at the role canghai holds for them.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Any

from werkzeug.http import parse_cookie

from butterfly_common.runtime import get_settings

from . import sessions, tokens, users
from .config import current_secret


@dataclass(frozen=True)
class Identity:
    username: str
    role: str
    #: ``session``, ``jwt``, ``token`` (the admin token) or ``proxy``
    via: str
    csrf: str = ""

    def can(self, role: str) -> bool:
        return users.has_role(self.role, role)


def _user_identity(username: str, via: str, epoch: int | None = None,
                   csrf: str = "") -> Identity | None:
    user = users.get_user(username)
    if user is None or (epoch is not None and user.epoch != epoch):
        return None
    return Identity(user.username, user.role, via, csrf)


def from_session_data(data: dict[str, Any] | None) -> Identity | None:
    """The signed-in user of a decoded session, if the user still exists unchanged."""
    if not data or not isinstance(data.get("u"), str):
        return None
    return _user_identity(data["u"], "session", int(data.get("ep", -1)), data.get("csrf", ""))


def from_headers(headers: Any, proxy_username: str = "-") -> Identity | None:
    """Identity of an API call (no Flask context): admin token, JWT, operator / read
    token, a trusted proxy's user (``proxy_username``: the request's ``X-Username``, kept
    only from ``BUTTERFLY_TRUSTED_PROXIES``), then the console's session cookie."""
    settings = get_settings()
    token = tokens.bearer_of(headers)
    if token:
        if _same(token, settings.admin_token):
            return Identity("admin-token", "admin", "token")
        claims = tokens.verify(current_secret().secret, token)
        if claims is not None:
            return _user_identity(claims["username"], "jwt", claims.get("ep"))
        if _same(token, settings.operator_token):
            return Identity("operator-token", "operator", "token")
        if _same(token, settings.read_token):
            return Identity("read-token", "viewer", "token")
        return None
    name = (proxy_username or "").strip()
    if name and name != "-":
        # the proxy's X-Role is the caller's role (no X-Role: a viewer), as at every service
        claimed = (headers.get("X-Role") or "").strip().lower()
        claimed = claimed if claimed in users.RANK else "viewer"
        found = _user_identity(name, "proxy")
        if found is None:  # a user of the proxy's sign-in, not canghai's: the fleet's rule
            return Identity(name, claimed, "proxy")
        # a user canghai keeps: never above the role canghai holds for them
        role = min(found.role, claimed, key=lambda r: users.RANK.get(r, -1))
        return Identity(found.username, role, "proxy")
    cookie = parse_cookie(headers.get("Cookie") or "").get(sessions.COOKIE)
    return from_session_data(sessions.decode(cookie)) if cookie else None


def _same(given: str, token: str) -> bool:
    return bool(token) and hmac.compare_digest(given.encode(), token.encode())


def csrf_ok(identity: Identity, given: str | None) -> bool:
    """Writes by a session need its CSRF token; token/JWT/proxy callers send no cookie a
    foreign page could ride on, so they need none."""
    if identity.via != "session":
        return True
    if not given or not identity.csrf:
        return False
    return hmac.compare_digest(given.encode(), identity.csrf.encode())
