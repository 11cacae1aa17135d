"""Console users: argon2id password hashes (argon2-cffi), roles, sign-in checks.

A wrong username costs the same argon2 verification as a wrong password, so response time
does not tell which usernames exist.
"""

from __future__ import annotations

import logging
import secrets
import time

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from butterfly_common import db
from butterfly_common.auth import epoch_key
from butterfly_common.runtime import get_redis

from .config import ROLES, valid_username
from .models import User

_hasher = PasswordHasher()
_DUMMY = _hasher.hash("not a password of anyone")
MIN_PASSWORD = 8
RANK = {role: i for i, role in enumerate(ROLES)}
log = logging.getLogger("butterfly.canghai.users")


def publish_epoch(user: User, ttl: float) -> None:
    """Tell the fleet the user's current epoch (``huoyan:ep:<user>``): every service
    checks a JWT's ``ep`` against it, so a token is good only while this key says so."""
    get_redis().set(epoch_key(user.username), str(user.epoch), px=max(1000, int(ttl * 1000)))


def revoke_epoch(username: str) -> None:
    """Every token of ``username`` stops working at the services (their epoch key goes);
    a failure is logged loudly: the tokens then live until their ``exp``."""
    try:
        get_redis().delete(epoch_key(username))
    except Exception:
        log.exception("could not revoke the tokens of %s at the services", username)


def _new_epoch() -> int:
    """A user's first epoch: random, so a user removed and added again under the same name
    never matches a session or token of the old one."""
    return secrets.randbelow(2**30) + 2


class UserError(ValueError):
    """A refused user change; the message says why."""


def has_role(role: str, needed: str) -> bool:
    """True when ``role`` is ``needed`` or above (viewer < operator < admin)."""
    return RANK.get(role, -1) >= RANK[needed]


def _check(username: str, password: str | None, role: str | None) -> None:
    if not valid_username(username):
        raise UserError("username: 1..64 letters, digits, '.', '_', '-' or '@'")
    if password is not None and len(password) < MIN_PASSWORD:
        raise UserError(f"password: at least {MIN_PASSWORD} characters")
    if role is not None and role not in ROLES:
        raise UserError(f"role must be one of {', '.join(ROLES)}")


def add_user(username: str, password: str, role: str) -> User:
    """Create a user; UserError when it exists or a value is bad."""
    _check(username, password, role)
    with db.database.connection_context():
        if User.get_or_none(User.username == username) is not None:
            raise UserError(f"user {username!r} exists")
        return User.create(username=username, password_hash=_hasher.hash(password), role=role,
                           epoch=_new_epoch())


def set_password(username: str, password: str) -> None:
    """Replace a password (signs the user out everywhere)."""
    _check(username, password, None)
    with db.database.connection_context():
        n = (User.update(password_hash=_hasher.hash(password), epoch=User.epoch + 1,
                         updated_at=time.time())
             .where(User.username == username).execute())
    revoke_epoch(username)
    if not n:
        raise UserError(f"no user {username!r}")


def set_role(username: str, role: str) -> None:
    """Change a role (signs the user out everywhere)."""
    _check(username, None, role)
    with db.database.connection_context():
        n = (User.update(role=role, epoch=User.epoch + 1, updated_at=time.time())
             .where(User.username == username).execute())
    revoke_epoch(username)
    if not n:
        raise UserError(f"no user {username!r}")


def remove_user(username: str) -> None:
    """Delete a user; their sessions and tokens stop working at once."""
    with db.database.connection_context():
        removed = User.delete().where(User.username == username).execute()
    revoke_epoch(username)
    if not removed:
        raise UserError(f"no user {username!r}")


def sign_out_everywhere(username: str) -> None:
    """Sign-out: the user's epoch moves on, so this session, every other session and every
    JWT issued to the user stop working (server-side; a replayed cookie is refused)."""
    with db.database.connection_context():
        (User.update(epoch=User.epoch + 1, updated_at=time.time())
         .where(User.username == username).execute())
    revoke_epoch(username)


def get_user(username: str) -> User | None:
    with db.database.connection_context():
        return User.get_or_none(User.username == username)


def list_users() -> list[User]:
    with db.database.connection_context():
        return list(User.select().order_by(User.username))


def count_users() -> int:
    with db.database.connection_context():
        return User.select().count()


def authenticate(username: str, password: str) -> User | None:
    """The user when ``password`` is theirs, else None (same cost either way)."""
    user = get_user(username) if valid_username(username) else None
    try:
        _hasher.verify(user.password_hash if user else _DUMMY, password)
    except (VerificationError, InvalidHashError):
        return None
    if user is None:
        return None
    if _hasher.check_needs_rehash(user.password_hash):
        with db.database.connection_context():
            User.update(password_hash=_hasher.hash(password)).where(User.id == user.id).execute()
    return user


def ensure_first_admin(username: str, password: str) -> bool:
    """Create the first admin from ``CANGHAI_ADMIN_PASSWORD`` when there is no user yet."""
    if not password or count_users():
        return False
    try:
        add_user(username, password, "admin")
    except UserError:
        return False  # another process created it first
    return True
