"""A minimal single-key lease (SET NX PX + compare-and-renew), so one replica sweeps.

Stand-in until ``butterfly_common.coordination.Lease`` lands on main: same method names
(``acquire(holder) -> token | None``, ``renew(holder, token) -> bool``, ``release``). One
key per command, so it works through Twemproxy.
"""

from __future__ import annotations

import secrets
from typing import Any

from butterfly_common.redis_client import Script

_RENEW = Script("if redis.call('GET', KEYS[1]) == ARGV[1] then "
                "return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end",
                "xq_lease_renew")
_RELEASE = Script("if redis.call('GET', KEYS[1]) == ARGV[1] then "
                  "return redis.call('DEL', KEYS[1]) else return 0 end", "xq_lease_release")


class Lease:
    """Whoever holds ``key`` owns the work for ``ttl`` seconds unless it renews."""

    def __init__(self, client: Any, key: str, ttl: float) -> None:
        self.client = client
        self.key = key
        self.ttl_ms = max(1, int(ttl * 1000))

    def acquire(self, holder: str) -> str | None:
        token = f"{holder}:{secrets.token_hex(4)}"
        return token if self.client.set(self.key, token, nx=True, px=self.ttl_ms) else None

    def renew(self, holder: str, token: str) -> bool:
        return bool(_RENEW(self.client, [self.key], [token, self.ttl_ms]))

    def release(self, holder: str, token: str) -> None:
        _RELEASE(self.client, [self.key], [token])
