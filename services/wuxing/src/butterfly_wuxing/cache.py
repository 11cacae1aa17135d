"""The Redis read cache and the namespace version keys, in JSON, never pickles.

Each namespace has one version key ``wx:{<ns>}:rev`` holding its last committed revision.
A cache entry is stored tagged with the version seen *before* its database read, and is
served only while the version still equals that tag. A write commits, then advances the
version (store.run_write), then answers - so after a write's answer no older entry can be
served, however readers and writers interleave (docs/architecture.md, "wuxing cache").
The same key is what ``watch`` polls.

A process that read the version key may trust it for ``WUXING_CACHE_LEASE`` seconds
(counted from *before* it sent the GET) without asking again, and serve its decoded
entries on that version with no Redis round trip at all. In exchange every write waits
out the lease after advancing the version and before it answers (:func:`commit`): any
version a reader obtained before the advance was sent before it, so its lease has run
out by the time the write's answer exists, and a read that starts after that answer asks
Redis again. Coherence is kept; a write answers up to one lease later.

Every key of a namespace carries the ``{ns}`` hash tag, so the two-key scripts stay on one
Twemproxy shard / Redis Cluster slot. Any Redis error makes the call a cache miss (a DB
read); a version advance that failed is retried before the cache is trusted again.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from typing import Any

from butterfly_common.redis_client import RedisLike, Script, make_redis

from .config import WuxingConfig
from .revisions import namespace_revision

log = logging.getLogger(__name__)

_GET = Script.from_package(__package__, "cache_get.lua")
_PUT = Script.from_package(__package__, "cache_put.lua")
_ADVANCE = Script.from_package(__package__, "version_advance.lua")

#: After a Redis error the cache is skipped for this long (reads go to the DB).
BREAK_SECONDS = 1.0
#: Decoded entries kept per process (the memo is simply emptied when it is full).
LOCAL_MAX = 10_000


def version_key(namespace: str) -> str:
    return f"wx:{{{namespace}}}:rev"


def lease_key(namespace: str) -> str:
    """Where the latest end of a read lease on the namespace's version is kept."""
    return f"wx:{{{namespace}}}:lease"


def entry_key(namespace: str, kind: str, *parts: Any) -> str:
    return ":".join([f"wx:{{{namespace}}}:{kind}", *map(str, parts)])


class Cache:
    """One process's view of the cache (a short-timeout client and a circuit breaker)."""

    def __init__(self, redis_url: str, config: WuxingConfig,
                 watch_sockets: bool = True) -> None:
        self.enabled = config.cache
        self.ttl_ms = int(config.cache_ttl * 1000)
        # watch_sockets: BUTTERFLY_FASTPATH_BREAKER_SOCKET, as for the process's client
        self.client: RedisLike = make_redis(redis_url, socket_timeout=config.cache_timeout,
                                            retries=0, watch_sockets=watch_sockets)
        self._lock = threading.Lock()
        self._broken_until = 0.0
        #: namespace -> revision whose version advance failed (retried before any use).
        self._pending: dict[str, int] = {}
        #: key -> (tag, decoded value): entries this process already decoded. Still checked
        #: against the version key on every read, so it is exactly as fresh as Redis, but a
        #: hit costs one plain GET and no JSON decoding. Values are shared: read-only.
        self._local: dict[str, tuple[str, Any]] = {}
        self.lease = config.cache_lease
        #: the lease in whole ms as the scripts take it (rounded up: never shorter)
        self.lease_ms = math.ceil(self.lease * 1000) if self.lease > 0 else 0
        #: namespace -> (version, monotonic deadline): a version read at most ``lease``
        #: seconds before the deadline, trusted until then (see the module docstring).
        self._leases: dict[str, tuple[str, float]] = {}
        self._renewing: dict[str, threading.Lock] = {}

    # -- health ---------------------------------------------------------------------------
    def usable(self) -> bool:
        """False while the breaker is open or a failed version advance cannot be replayed."""
        if time.monotonic() < self._broken_until:
            return False
        if self._pending:
            with self._lock:
                pending, self._pending = self._pending, {}
            try:
                for namespace, revision in pending.items():
                    _ADVANCE(self.client, [version_key(namespace), lease_key(namespace)],
                             [revision])
            except Exception as exc:
                self._fail(exc)
                with self._lock:
                    for namespace, revision in pending.items():
                        self._pending[namespace] = max(revision,
                                                       self._pending.get(namespace, 0))
                return False
        return True

    def _fail(self, exc: Exception) -> None:
        if time.monotonic() >= self._broken_until:
            log.warning("wuxing cache: redis error, reading from the database: %s", exc)
        self._broken_until = time.monotonic() + BREAK_SECONDS

    # -- versions -------------------------------------------------------------------------
    def advance(self, namespace: str, revision: int) -> float:
        """Publish a committed revision: invalidates the namespace's entries, wakes watchers.

        Returns how long (s) read leases on an older version may still be trusted, counted
        from the reply: the latest lease's end as Redis recorded it (0 when every lease
        taken before this advance has run out); the whole lease when the advance failed or
        the version key was missing (a Redis that lost its keys lost the leases' marks).
        """
        self._leases.pop(namespace, None)
        try:
            if time.monotonic() < self._broken_until:
                raise ConnectionError("cache circuit open")
            _, wait_ms = _ADVANCE(self.client, [version_key(namespace), lease_key(namespace)],
                                  [revision])
        except Exception as exc:
            self._fail(exc)
            with self._lock:
                self._pending[namespace] = max(revision, self._pending.get(namespace, 0))
            return self.lease
        if self.lease <= 0:
            return 0.0
        return self.lease if int(wait_ms) < 0 else min(self.lease, int(wait_ms) / 1000)

    def version(self, namespace: str) -> int | None:
        """The namespace's version key (None when missing or Redis is unavailable)."""
        try:
            raw = self.client.get(version_key(namespace))
        except Exception as exc:
            self._fail(exc)
            return None
        return None if raw is None else int(raw)

    # -- entries --------------------------------------------------------------------------
    def get(self, namespace: str, key: str) -> tuple[Any, str | None]:
        """``(value, None)`` on a hit, ``(None, tag)`` on a miss (tag: version to store
        under; None means "do not store")."""
        if not self.enabled or not self.usable():
            return None, None
        local = self._local.get(key)
        if local is not None:
            try:
                version = self._leased(namespace) or self._renew(namespace)
            except Exception as exc:
                self._fail(exc)
                return None, None
            if version is not None and version == local[0]:
                return local[1], None
        sent = time.monotonic()
        try:
            version, entry = _GET(self.client, [version_key(namespace), key,
                                                lease_key(namespace)], [self.lease_ms])
        except Exception as exc:
            self._fail(exc)
            return None, None
        if version is None:
            return None, None
        self._lease(namespace, version, sent)
        if entry is not None:
            tag, _, payload = entry.partition("\n")
            if tag == version:
                value = json.loads(payload)
                self._remember(key, tag, value)
                return value, None
        return None, version

    def _leased(self, namespace: str) -> str | None:
        """The namespace's version while this process's lease on it runs, else None."""
        lease = self._leases.get(namespace)
        if lease is not None and time.monotonic() < lease[1]:
            return lease[0]
        return None

    def _renew(self, namespace: str) -> str | None:
        """Read the version key; with a lease, one thread per namespace asks at a time and
        the others take its answer (any answer is good until its send time + lease)."""
        if self.lease <= 0:
            return self._get_version(namespace)
        lock = self._renewing.get(namespace)
        if lock is None:
            if len(self._renewing) >= LOCAL_MAX:
                self._renewing.clear()  # at worst two threads ask at once
            lock = self._renewing.setdefault(namespace, threading.Lock())
        with lock:
            version = self._leased(namespace)
            if version is not None:
                return version
            if time.monotonic() < self._broken_until:
                raise ConnectionError("cache circuit open")
            sent = time.monotonic()
            version = self._get_version(namespace)
            self._lease(namespace, version, sent)
            return version

    def _get_version(self, namespace: str) -> str | None:
        """The version key; with a lease, read by cache_get.lua, which records the lease
        (its end) for the writes to wait out."""
        if self.lease_ms:
            version_ = version_key(namespace)
            raw, _ = _GET(self.client, [version_, version_, lease_key(namespace)],
                          [self.lease_ms])
        else:
            raw = self.client.get(version_key(namespace))
        return None if raw is None else str(raw)  # the client decodes: already a str

    def _lease(self, namespace: str, version: str | None, sent: float) -> None:
        if version is not None and self.lease > 0:
            if len(self._leases) >= LOCAL_MAX:
                self._leases.clear()
            self._leases[namespace] = (version, sent + self.lease)

    def _remember(self, key: str, tag: str, value: Any) -> None:
        if len(self._local) >= LOCAL_MAX:
            self._local.clear()
        self._local[key] = (tag, value)

    def put(self, namespace: str, key: str, tag: str | None, value: Any) -> None:
        """Store ``value`` read after seeing version ``tag`` (no-op if the version moved)."""
        if tag is None or not self.enabled:
            return
        try:
            _PUT(self.client, [version_key(namespace), key],
                 [tag, f"{tag}\n{json.dumps(value)}", self.ttl_ms])
        except Exception as exc:
            self._fail(exc)
            return
        self._remember(key, tag, value)


_cache: tuple[object, Cache] | None = None
_cache_lock = threading.Lock()


def get_cache() -> Cache:
    """The process's cache, built from the settings on first use (and when they change)."""
    global _cache
    from butterfly_common import runtime

    settings = runtime.get_settings()
    current = _cache
    if current is None or current[0] is not settings:
        with _cache_lock:
            current = (settings, Cache(settings.redis_url, runtime.get_config(WuxingConfig),
                                       settings.fastpath_breaker_socket))
            _cache = current
    return current[1]


def advance(namespace: str, revision: int) -> None:
    get_cache().advance(namespace, revision)


#: called with ``(namespace, revision)`` after a write of this process advanced the
#: version: the watch wakes this process's watches at once instead of at its next poll
COMMITTED: list[Any] = []


def commit(namespace: str, revision: int) -> float:
    """A write's step after its commit: advance the version and wake this process's
    watches. Returns how long the write must still wait before it answers (:func:`sleep`):
    the read leases processes may hold on an older version (at most
    ``WUXING_CACHE_LEASE``; nothing when no process read the version within the last
    lease). Counted from after the advance's reply (or its failure): every lease on an
    older version was taken before the advance ran, and Redis recorded its end then."""
    cache = get_cache()
    wait = cache.advance(namespace, revision)
    for listener in COMMITTED:
        listener(namespace, revision)
    return wait if cache.enabled else 0.0


def sleep(seconds: float) -> None:
    """Wait out what :func:`commit` returned (the time already gone deducted)."""
    if seconds > 0:
        time.sleep(seconds)


def read_through(namespace: str, key: str, load: Any) -> Any:
    """The cached value of ``key``, else ``load()`` stored under the pre-read version.

    When the version key is missing (fresh or flushed Redis) it is seeded from the
    database before anything is cached, so entries are only ever tagged with real
    revisions.
    """
    cache = get_cache()
    value, tag = cache.get(namespace, key)
    if value is not None:
        return value
    if tag is None and cache.enabled and cache.version(namespace) is None \
            and time.monotonic() >= cache._broken_until:
        cache.advance(namespace, namespace_revision(namespace)[0])
    value = load()
    if value is not None:
        cache.put(namespace, key, tag, value)
    return value
