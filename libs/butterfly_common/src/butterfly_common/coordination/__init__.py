"""Coordination between processes over Redis: members, owners, leases, CAS, once, versions.

Every command touches ONE key (plain commands, non-transactional pipelines, or a one-key
Lua script), so all of it works unchanged through Twemproxy and on Redis Cluster. Times
that decide correctness (TTLs, lease expiry) are the server's, never a host's clock.

- :class:`Members` - heartbeat / live members of a group, and :func:`owner_of` (rendezvous
  hashing: one preferred owner per key among the live members, stable as members come
  and go);
- :class:`Lease` - one holder per key at a time, with fencing tokens that only grow;
- :func:`cas` / :func:`cad` / :func:`cas_many` - compare-and-set / -delete one key;
- :func:`once` - true for the first caller per key within a TTL;
- :class:`Version` - a counter to bump on every change and poll for changes.

Key layout and the protocols built on these: docs/architecture.md ("Coordination").
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable, Sequence
from typing import Any

from ..polling import poll_until
from ..redis_client import Script, pipeline

__all__ = ["Lease", "Members", "Version", "cad", "cas", "cas_many", "once", "owner_of"]

_cas = Script.from_package("butterfly_common.coordination", "cas.lua")
_cad = Script.from_package("butterfly_common.coordination", "cad.lua")
_lease = Script.from_package("butterfly_common.coordination", "lease.lua")


def ms(seconds: float) -> int:
    """Seconds to the milliseconds Redis TTLs take (at least 1: PX 0 is an error)."""
    return max(1, int(seconds * 1000))


# -- compare-and-set, compare-and-delete, once ------------------------------------------

def cas(client: Any, key: str, expected: str, new: str, ttl: float | None = None) -> bool:
    """Set ``key`` to ``new`` only while it holds ``expected``; ``ttl`` seconds (None keeps
    the key's TTL). True when it was replaced."""
    return bool(_cas(client, [key], [expected, new, "" if ttl is None else ms(ttl)]))


def cas_many(client: Any, items: Iterable[tuple[str, str, str, float | None]]) -> list[bool]:
    """Several ``(key, expected, new, ttl)`` compare-and-sets in one pipelined round trip."""
    pipe = pipeline(client)  # the raw one on a plain client: a scheduler hot path
    count = 0
    for key, expected, new, ttl in items:
        # EVAL, not EVALSHA: a NOSCRIPT reply inside a pipeline would fail the whole
        # batch, and the script is a few dozen bytes. execute_command, not pipe.eval():
        # redis-py's cluster pipeline refuses .eval() but routes a raw EVAL by its key.
        pipe.execute_command("EVAL", _cas.source, 1, key, expected, new,
                             "" if ttl is None else ms(ttl))
        count += 1
    return [bool(r) for r in pipe.execute()] if count else []


def cad(client: Any, key: str, expected: str) -> bool:
    """Delete ``key`` only while it holds ``expected`` (release a lock that is still ours)."""
    return bool(_cad(client, [key], [expected]))


def once(client: Any, key: str, ttl: float, value: str = "1") -> bool:
    """True for the first caller within ``ttl`` seconds (``SET NX PX``), False after."""
    return bool(client.set(key, value, nx=True, px=ms(ttl)))


# -- members and owners -------------------------------------------------------------------

def owner_of(key: str, live: Sequence[str]) -> str | None:
    """The preferred owner of ``key`` among ``live`` members (rendezvous hashing).

    Each (member, key) pair draws an independent 64-bit score; the highest wins. When a
    member leaves, only the keys it owned move. blake2b, not crc32: CRC is linear, so
    the draws would not be independent per key and one member would get most keys.
    """
    if not live:
        return None
    return max(live, key=lambda m: hashlib.blake2b(f"{m}|{key}".encode(),
                                                   digest_size=8).digest())


class Members:
    """Live members of ``group``: each heartbeats ``<group>:node:<member>`` (TTL ``ttl``)
    and ``<group>:nodes`` (ZSET member -> last beat, for enumeration only)."""

    def __init__(self, client: Any, group: str, ttl: float) -> None:
        self.client = client
        self.group = group
        self.ttl = ttl
        self.nodes_key = f"{group}:nodes"

    def node_key(self, member: str) -> str:
        return f"{self.group}:node:{member}"

    def beat(self, member: str, ttl: float | None = None) -> None:
        """Say ``member`` is alive for ``ttl`` seconds more (default: the group's TTL)."""
        pipe = self.client.pipeline(transaction=False)
        pipe.set(self.node_key(member), str(time.time()), px=ms(self.ttl if ttl is None
                                                                 else ttl))
        pipe.zadd(self.nodes_key, {member: time.time()})
        pipe.execute()

    def leave(self, member: str) -> None:
        """A graceful stop: peers see ``member`` gone at once."""
        pipe = self.client.pipeline(transaction=False)
        pipe.delete(self.node_key(member))
        pipe.zrem(self.nodes_key, member)
        pipe.execute()

    def alive(self, members: Iterable[str]) -> dict[str, bool]:
        """Whether each member's heartbeat key exists now (server-side TTL: no clock skew)."""
        names = list(dict.fromkeys(members))
        if not names:
            return {}
        pipe = self.client.pipeline(transaction=False)
        for name in names:
            pipe.exists(self.node_key(name))
        return dict(zip(names, (bool(n) for n in pipe.execute()), strict=True))

    def seen(self, within: float) -> list[str]:
        """Members that beat within ``within`` seconds (by their own clocks)."""
        return list(self.client.zrangebyscore(self.nodes_key, time.time() - within, "+inf"))

    def live(self) -> list[str]:
        """Members whose heartbeat key exists now, sorted."""
        candidates = self.seen(within=3600)
        alive = self.alive(candidates)
        return sorted(n for n in candidates if alive.get(n))

    def forget(self, older_than: float) -> None:
        """Drop members silent for ``older_than`` seconds from the enumeration set."""
        self.client.zremrangebyscore(self.nodes_key, "-inf", time.time() - older_than)

    @staticmethod
    def owner_of(key: str, live: Sequence[str]) -> str | None:
        """See :func:`owner_of`."""
        return owner_of(key, live)


# -- leases ---------------------------------------------------------------------------------

class Lease:
    """One holder of ``key`` at a time for ``ttl`` seconds, renewed while it works.

    :meth:`acquire` hands out a fencing token that grows with every new holder; pass it
    along with the work (e.g. store it beside what the holder writes) so a holder that
    stalled past its lease and woke up can be told apart from its successor.
    """

    def __init__(self, client: Any, key: str, ttl: float) -> None:
        self.client = client
        self.key = key
        self.ttl = ttl

    def _run(self, op: str, holder: str, token: int | str) -> int:
        return int(_lease(self.client, [self.key], [op, holder, str(token), ms(self.ttl)]))

    def acquire(self, holder: str) -> int | None:
        """The fencing token when ``holder`` now holds the lease (again), else None."""
        return self._run("acquire", holder, 0) or None

    def renew(self, holder: str, token: int) -> bool:
        """Extend the lease by ``ttl``; False when another holder took it meanwhile."""
        return bool(self._run("renew", holder, token))

    def release(self, holder: str, token: int) -> bool:
        """Give the lease up (only if still ours), so the next holder need not wait."""
        return bool(self._run("release", holder, token))

    def holder(self) -> tuple[str, int] | None:
        """``(holder, token)`` of the current lease as last written (expiry not checked)."""
        holder, token = self.client.hmget(self.key, ["h", "t"])
        return (holder, int(token)) if holder else None


# -- versions ---------------------------------------------------------------------------------

class Version:
    """A change counter on one key: writers :meth:`bump` after committing a change,
    readers poll :meth:`get` or block in :meth:`wait_change` (no pub/sub through
    Twemproxy)."""

    FIRST_PAUSE = 0.01
    MAX_PAUSE = 0.5

    def __init__(self, client: Any, key: str) -> None:
        self.client = client
        self.key = key

    def bump(self) -> int:
        """Announce a change; returns the new version."""
        return int(self.client.incr(self.key))

    def get(self) -> int:
        """The current version (0 before the first bump)."""
        raw = self.client.get(self.key)
        return int(raw) if raw else 0

    def wait_change(self, since: int, timeout: float) -> int:
        """Poll until the version differs from ``since`` or ``timeout`` seconds pass;
        returns the version last read. Polls after 10 ms, backing off to 0.5 s."""
        return poll_until(self.get, lambda v: v != since, timeout,
                          first=self.FIRST_PAUSE, cap=self.MAX_PAUSE)
