"""Who is asking, and may they: one identity from a session, a JWT, the admin token or a
trusted proxy's ``X-Username``, and role checks done on the server for every action.

Roles: ``viewer`` reads, ``operator`` requeues / runs / pauses / retries, ``admin``
deletes, purges and manages users. A session is honoured for writes only with its CSRF
token (form field or ``X-CSRF-Token`` header).
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
    """Identity of an API call (no Flask context): admin token, JWT, trusted proxy user,
    then the console's session cookie."""
    settings = get_settings()
    token = tokens.bearer_of(headers)
    if token:
        admin = settings.admin_token
        if admin and hmac.compare_digest(token.encode(), admin.encode()):
            return Identity("admin-token", "admin", "token")
        claims = tokens.verify(current_secret().secret, token)
        if claims is not None:
            return _user_identity(claims["username"], "jwt", claims.get("ep"))
        return None
    if proxy_username and proxy_username != "-":
        found = _user_identity(proxy_username, "proxy")
        if found is None:
            return None
        # the proxy's X-Role caps the user's role (no X-Role: a viewer), as at every service
        claimed = (headers.get("X-Role") or "").strip().lower()
        claimed = claimed if claimed in users.RANK else "viewer"
        role = min(found.role, claimed, key=lambda r: users.RANK.get(r, -1))
        return Identity(found.username, role, "proxy")
    cookie = parse_cookie(headers.get("Cookie") or "").get(sessions.COOKIE)
    return from_session_data(sessions.decode(cookie)) if cookie else None


def csrf_ok(identity: Identity, given: str | None) -> bool:
    """Writes by a session need its CSRF token; token/JWT/proxy callers send no cookie a
    foreign page could ride on, so they need none."""
    if identity.via != "session":
        return True
    if not given or not identity.csrf:
        return False
    return hmac.compare_digest(given.encode(), identity.csrf.encode())
