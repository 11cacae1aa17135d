"""The console's session cookie: Flask's signed cookie session, readable outside Flask too.

The cookie holds the username, the user's epoch, a CSRF token and the sign-in time; it is
signed with a key derived from ``BUTTERFLY_SECRET_KEY`` (``config.FleetSecret.key``) and
expires after ``CANGHAI_SESSION_HOURS`` even if a browser keeps it.
"""

from __future__ import annotations

from typing import Any

from itsdangerous import BadSignature

COOKIE = "canghai_session"
_serializer: Any = None
_max_age: float = 8 * 3600


def install(serializer: Any, max_age: float) -> None:
    """Called by the web layer once its Flask app is configured."""
    global _serializer, _max_age
    _serializer, _max_age = serializer, max_age


def decode(cookie: str) -> dict[str, Any] | None:
    """The session data of a cookie value, or None when forged, stale or unreadable."""
    if _serializer is None:
        return None
    try:
        data = _serializer.loads(cookie, max_age=_max_age)
    except (BadSignature, ValueError, TypeError):
        return None
    return data if isinstance(data, dict) else None
