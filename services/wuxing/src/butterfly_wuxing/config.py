"""wuxing's own settings: the ``WUXING_*`` variables, validated once at start.

Every variable has a default, so a bare ``butterfly serve wuxing`` runs on SQLite and a
local Redis. A malformed value stops start-up with a :class:`SettingsError` naming it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from butterfly_common.settings import SettingsError, env_flag, env_number


@dataclass(frozen=True)
class WuxingConfig:
    """Everything wuxing reads from the environment, with its defaults."""

    #: History rows older than this many days are pruned (the revision feed is compacted).
    history_days: float = 90.0
    #: Seconds between two retention passes in each server process.
    history_prune_interval: float = 3600.0
    #: Read through the Redis cache (off: every read goes to the database).
    cache: bool = True
    #: Seconds a cache entry lives even when nothing changes (bounds staleness after an
    #: outage that swallowed an invalidation; see docs/architecture.md, wuxing cache).
    cache_ttl: float = 3600.0
    #: Seconds a process trusts a version it read from Redis (no round trip on a hit
    #: meanwhile); every write answers that much later. 0: ask Redis on every read.
    #: Use the same value in every wuxing process of a fleet.
    cache_lease: float = 0.01
    #: Socket timeout of cache commands: a slow Redis must not slow reads down much.
    cache_timeout: float = 0.2
    #: When set, reads need ``Authorization: Bearer <token>`` (or a write credential).
    read_token: str = ""
    #: Longest long poll of ``/wuxing/watch`` (keep it below BUTTERFLY_TIMEOUT).
    watch_max_timeout: float = 50.0
    #: Most changes one watch answer carries (whole revisions are never split).
    watch_max_changes: int = 1000
    #: Upper bound of the watch's adaptive poll interval on the version key, seconds.
    watch_poll_max: float = 0.02

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> WuxingConfig:
        """Build from the ``WUXING_*`` variables; raises SettingsError naming a bad one."""
        token = (env.get("WUXING_READ_TOKEN") or "").strip()
        if token and len(token) < 16:
            raise SettingsError("WUXING_READ_TOKEN: use at least 16 characters")
        return cls(
            history_days=env_number(env, "WUXING_HISTORY_DAYS", 90.0, 0.0),
            history_prune_interval=env_number(env, "WUXING_HISTORY_PRUNE_INTERVAL", 3600.0,
                                              1.0),
            cache=env_flag(env, "WUXING_CACHE", True),
            cache_ttl=env_number(env, "WUXING_CACHE_TTL", 3600.0, 1.0),
            cache_lease=env_number(env, "WUXING_CACHE_LEASE", 0.01, 0.0, 1.0),
            cache_timeout=env_number(env, "WUXING_CACHE_TIMEOUT", 0.2, 0.01, 10.0),
            read_token=token,
            watch_max_timeout=env_number(env, "WUXING_WATCH_MAX_TIMEOUT", 50.0, 0.0, 3600.0),
            watch_max_changes=int(env_number(env, "WUXING_WATCH_MAX_CHANGES", 1000, 1,
                                             100_000)),
            watch_poll_max=env_number(env, "WUXING_WATCH_POLL_MAX", 0.02, 0.001, 5.0),
        )
