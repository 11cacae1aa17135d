"""Sign-in rate limits: failures counted per username and per client address in Redis.

Each counter is one key, bumped by a one-key Lua script (INCR, PEXPIRE on the first
attempt), so it works through Twemproxy and is shared by every worker and replica. An
attempt is counted *before* its password is checked (:meth:`Lockout.attempt`), so a burst
of concurrent sign-ins gets at most the limit of password checks, never one per request;
a success then clears the user's counter and gives the address its attempt back. The
window starts at the first attempt.
"""

from __future__ import annotations

import hashlib
from typing import Any

from butterfly_common.redis_client import Script

PREFIX = "canghai:signin"
_BUMP = Script("local n = redis.call('INCR', KEYS[1])\n"
               "if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end\n"
               "return n", "canghai_signin_bump")


def _key(kind: str, value: str) -> str:
    digest = hashlib.sha256(value.encode()).hexdigest()[:32]
    return f"{PREFIX}:{kind}:{digest}"


_GIVE_BACK = Script("local n = redis.call('DECR', KEYS[1])\n"
                   "if n <= 0 then redis.call('DEL', KEYS[1]) end\n"
                   "return n", "canghai_signin_give_back")


class Lockout:
    """``attempt`` before checking a password (counts it), ``succeeded`` after a good one."""

    def __init__(self, client: Any, user_limit: int, ip_limit: int, minutes: float) -> None:
        self.client = client
        self.user_limit = user_limit
        self.ip_limit = ip_limit
        self.window_ms = int(minutes * 60_000)

    def locked(self, username: str, ip: str) -> bool:
        """True when the user or the address used up its failures in the window."""
        pipe = self.client.pipeline(transaction=False)
        pipe.get(_key("user", username.lower()))
        pipe.get(_key("ip", ip))
        user_n, ip_n = (int(v or 0) for v in pipe.execute())
        return user_n >= self.user_limit or ip_n >= self.ip_limit

    def attempt(self, username: str, ip: str) -> bool:
        """Count one attempt of ``username`` from ``ip``; True when it may check the
        password (the user and the address are both within their limits, this one
        included)."""
        user_n = int(_BUMP(self.client, [_key("user", username.lower())], [self.window_ms]))
        ip_n = int(_BUMP(self.client, [_key("ip", ip)], [self.window_ms]))
        return user_n <= self.user_limit and ip_n <= self.ip_limit

    def failed(self, username: str, ip: str) -> None:
        """Count a failure without an attempt (kept for callers outside sign-in)."""
        for key in (_key("user", username.lower()), _key("ip", ip)):
            _BUMP(self.client, [key], [self.window_ms])

    def succeeded(self, username: str, ip: str | None = None) -> None:
        """A good password: the user's counter goes, the address gets its attempt back."""
        self.client.delete(_key("user", username.lower()))
        if ip is not None:
            _GIVE_BACK(self.client, [_key("ip", ip)], [])
