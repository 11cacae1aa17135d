"""wuxing's own settings: the ``WUXING_*`` variables, validated once at start.

Every variable has a default, so a bare ``butterfly serve wuxing`` runs on SQLite and a
local Redis. A malformed value stops start-up with a :class:`SettingsError` naming it.
"""

from __future__ import annotations

from dataclasses import dataclass

from butterfly_common.config import Config, setting


@dataclass(frozen=True)
class WuxingConfig(Config):
    """Everything wuxing reads from the environment, with its defaults."""

    history_days: float = setting(
        "WUXING_HISTORY_DAYS", 90.0, min=0.0,
        help="history rows older than this many days are pruned (the revision feed is "
             "compacted)")
    history_prune_interval: float = setting(
        "WUXING_HISTORY_PRUNE_INTERVAL", 3600.0, min=1.0,
        help="seconds between two retention passes in each server process")
    cache: bool = setting("WUXING_CACHE", True,
                          help="read through the Redis cache (off: every read goes to the DB)")
    #: Bounds staleness after an outage that swallowed an invalidation; see
    #: docs/architecture.md, wuxing cache.
    cache_ttl: float = setting(
        "WUXING_CACHE_TTL", 3600.0, min=1.0,
        help="seconds a cache entry lives even when nothing changes")
    #: No round trip on a hit meanwhile; every write answers that much later. Use the same
    #: value in every wuxing process of a fleet.
    cache_lease: float = setting(
        "WUXING_CACHE_LEASE", 0.01, min=0.0, max=1.0,
        help="seconds a process trusts a version it read from Redis (0: ask on every read)")
    cache_timeout: float = setting(
        "WUXING_CACHE_TIMEOUT", 0.2, min=0.01, max=10.0,
        help="socket timeout of cache commands: a slow Redis must not slow reads down much")
    #: Writers of a namespace that arrive while its previous group commits queue up; one
    #: of them then commits them all in one transaction (store.run_prepared).
    write_group_max: int = setting(
        "WUXING_WRITE_GROUP_MAX", 32, min=1, max=1000,
        help="most writes of one namespace a process commits together in one transaction, "
             "each with its own revision and CAS (1: every write commits alone)")
    read_token: str = setting(
        "WUXING_READ_TOKEN", "", min_len=16, secret=True,
        help="when set, reads need Authorization: Bearer <token> (or a write credential)")
    watch_max_timeout: float = setting(
        "WUXING_WATCH_MAX_TIMEOUT", 50.0, min=0.0, max=3600.0,
        help="longest long poll of /wuxing/watch (keep it below BUTTERFLY_TIMEOUT)")
    watch_keepalive: float = setting(
        "WUXING_WATCH_KEEPALIVE", 5.0, min=0.05, max=300.0,
        help="seconds a streamed watch (/wuxing/watch?stream=1) stays silent at most: "
             "it sends a keep-alive line after that long without a change")
    watch_max_changes: int = setting(
        "WUXING_WATCH_MAX_CHANGES", 1000, min=1, max=100_000,
        help="most changes one watch answer carries (whole revisions are never split)")
    watch_poll_max: float = setting(
        "WUXING_WATCH_POLL_MAX", 0.005, min=0.001, max=5.0,
        help="upper bound of the watch's adaptive poll interval on the version key (s)")
    client_ttl: float = setting(
        "WUXING_CLIENT_TTL", 3600.0, min=1.0, max=30 * 86400.0,
        help="seconds a client's report counts (client_list / client_stats); a client "
             "reports again within it or is forgotten")
