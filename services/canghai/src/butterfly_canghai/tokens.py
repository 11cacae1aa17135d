"""huoyan's tokens: HS256 JWTs signed with ``BUTTERFLY_SECRET_KEY`` for other clients.

Claims keep the original's (``iss=butterfly``, ``jti``, ``iat``, ``exp``, ``username``) and
add ``role`` and ``ep`` (the user's epoch): a password change, role change or removal
invalidates every token issued before it.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import jwt

from butterfly_common import auth

ISSUER = auth.JWT_ISSUER
ALGORITHM = auth.JWT_ALGORITHM


def issue(key: str, username: str, role: str, epoch: int, ttl: float) -> str:
    now = int(time.time())
    claims = {"iss": ISSUER, "jti": uuid.uuid4().hex, "iat": now, "exp": now + int(ttl),
              "username": username, "role": role, "ep": epoch}
    return jwt.encode(claims, key, algorithm=ALGORITHM)


def verify(key: str, token: str) -> dict[str, Any] | None:
    """The claims of a valid, unexpired token of ours (``ep`` required: a token without
    it could never be revoked), else None. The framework's check, so canghai and every
    service accept the same tokens."""
    return auth.jwt_claims(key, token)


def bearer_of(headers: Any) -> str | None:
    """The token of ``Authorization: Bearer <jwt>``, the original pages' ``Authorization:
    Bearer: <jwt>``, or a bare ``Bearer: <jwt>`` header."""
    auth = (headers.get("Authorization") or "").strip()
    if auth[:7].lower() == "bearer:":
        return auth[7:].strip() or None
    if auth[:7].lower() == "bearer ":
        value = auth[7:].strip()
        return value.removeprefix(":").strip() or None
    legacy = (headers.get("Bearer") or "").strip()
    return legacy or None
