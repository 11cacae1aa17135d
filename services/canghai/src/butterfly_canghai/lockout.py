"""Sign-in rate limits: failures counted per username and per client address in Redis.

Each counter is one key, bumped by a one-key Lua script (INCR, PEXPIRE on the first
failure), so it works through Twemproxy and is shared by every worker and replica. The
window starts at the first failure; a success clears the user's counter (not the address's).
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


class Lockout:
    """``locked`` before checking a password, ``failed`` / ``succeeded`` after."""

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

    def failed(self, username: str, ip: str) -> None:
        for key in (_key("user", username.lower()), _key("ip", ip)):
            _BUMP(self.client, [key], [self.window_ms])

    def succeeded(self, username: str) -> None:
        self.client.delete(_key("user", username.lower()))
