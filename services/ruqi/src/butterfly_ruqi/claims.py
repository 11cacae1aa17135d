"""The Redis side of running each fire exactly once across replicas.

Every command here touches ONE key (plain commands, non-transactional pipelines, or a
one-key Lua script), so it works unchanged through Twemproxy and on Redis Cluster.

Keys (``ruqi:`` prefix):

======================  ======  ===========================================================
``fire:<job>:<ms>``     STRING  the fire's state: ``c|<owner>`` claimed, ``r|<owner>``
                                running, ``d|<owner>|<status>`` done (all with a TTL)
``node:<owner>``        STRING  an engine's heartbeat; missing = that engine is dead
``nodes``               ZSET    owner -> last heartbeat (for ``status`` only)
``lock:<job>``          STRING  overlap=forbid run lock, value ``<owner>|<ms>``
``version``             STRING  bumped on every job change; engines poll it
``manual``              LIST    run_job requests for whichever engine pops first
``prune``               STRING  history retention lease (one pruner per interval)
======================  ======  ===========================================================
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

from butterfly_common.redis_client import Script

PREFIX = "ruqi"
VERSION_KEY = f"{PREFIX}:version"
MANUAL_KEY = f"{PREFIX}:manual"
NODES_KEY = f"{PREFIX}:nodes"
PRUNE_KEY = f"{PREFIX}:prune"

CLAIMED, RUNNING, DONE = "c", "r", "d"

_cas = Script.from_package("butterfly_ruqi", "cas.lua")
_cad = Script.from_package("butterfly_ruqi", "cad.lua")


def fire_key(job_id: str, ms: int, manual: bool = False) -> str:
    """The claim key of one (job, scheduled time); manual runs get their own namespace."""
    return f"{PREFIX}:fire:{job_id}:{'m' if manual else ''}{ms}"


def node_key(owner: str) -> str:
    return f"{PREFIX}:node:{owner}"


def lock_key(job_id: str) -> str:
    return f"{PREFIX}:lock:{job_id}"


def parse_state(value: str | None) -> tuple[str, str, str]:
    """``(phase, owner, extra)`` of a fire key's value; ``("", "", "")`` when absent.

    ``extra`` is the status of a done fire and the reqid of a claimed or running one."""
    if not value:
        return "", "", ""
    parts = value.split("|", 2)
    return parts[0], parts[1] if len(parts) > 1 else "", parts[2] if len(parts) > 2 else ""


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


class Claims:
    """One engine's view of the shared claim keys; ``owner`` names the engine."""

    def __init__(self, redis: Any, owner: str) -> None:
        self.redis = redis
        self.owner = owner

    # -- fires ---------------------------------------------------------------------------
    def claim(self, keys: Sequence[str], ttls: Sequence[float],
              reqids: Sequence[str]) -> list[bool]:
        """SET NX every key in one round trip; True where this engine won the fire.

        The value carries the fire's reqid, so a peer that takes the fire over or records
        it ``lost`` uses the reqid the callee saw, not one of its own."""
        pipe = self.redis.pipeline(transaction=False)
        for key, ttl, reqid in zip(keys, ttls, reqids, strict=True):
            pipe.set(key, f"{CLAIMED}|{self.owner}|{reqid}", nx=True, px=_ms(ttl))
        return [bool(ok) for ok in pipe.execute()]

    def start(self, key: str, ttl: float, reqid: str) -> bool:
        """claimed -> running, only if still ours (a peer may have taken it over)."""
        return bool(_cas(self.redis, [key], [f"{CLAIMED}|{self.owner}|{reqid}",
                                             f"{RUNNING}|{self.owner}|{reqid}", _ms(ttl)]))

    def transition(self, key: str, expected: str, new: str, ttl: float) -> bool:
        """Compare-and-set one fire key (take-overs and marking a fire done)."""
        return bool(_cas(self.redis, [key], [expected, new, _ms(ttl)]))

    def finish_many(self, items: Iterable[tuple[str, str, str, float]]) -> None:
        """Mark fires done: ``(key, expected, new, ttl)`` compare-and-sets, pipelined."""
        pipe = self.redis.pipeline(transaction=False)
        count = 0
        for key, expected, new, ttl in items:
            _cas_in_pipe(pipe, key, expected, new, ttl)
            count += 1
        if count:
            pipe.execute()

    def peek(self, keys: Sequence[str]) -> list[str | None]:
        pipe = self.redis.pipeline(transaction=False)
        for key in keys:
            pipe.get(key)
        return pipe.execute() if keys else []

    # -- engines ---------------------------------------------------------------------------
    def heartbeat(self, ttl: float) -> None:
        pipe = self.redis.pipeline(transaction=False)
        pipe.set(node_key(self.owner), str(time.time()), px=_ms(ttl))
        pipe.zadd(NODES_KEY, {self.owner: time.time()})
        pipe.execute()

    def leave(self) -> None:
        """Graceful stop: peers see us gone at once and take over what we claimed."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.delete(node_key(self.owner))
        pipe.zrem(NODES_KEY, self.owner)
        pipe.execute()

    def alive(self, owners: Iterable[str]) -> dict[str, bool]:
        owners = list(dict.fromkeys(owners))
        pipe = self.redis.pipeline(transaction=False)
        for owner in owners:
            pipe.exists(node_key(owner))
        return dict(zip(owners, (bool(n) for n in pipe.execute()), strict=True)) \
            if owners else {}

    def nodes(self, within: float) -> list[str]:
        """Engines that beat within ``within`` seconds (by their own clocks)."""
        return list(self.redis.zrangebyscore(NODES_KEY, time.time() - within, "+inf"))

    def live_nodes(self) -> list[str]:
        """Engines whose heartbeat key exists now (server-side TTL: no clock skew)."""
        candidates = self.nodes(within=3600)
        alive = self.alive(candidates)
        return [n for n in candidates if alive.get(n)]

    def forget_nodes(self, older_than: float) -> None:
        self.redis.zremrangebyscore(NODES_KEY, "-inf", time.time() - older_than)

    # -- overlap=forbid lock ---------------------------------------------------------------
    def lock(self, job_id: str, token: str, ttl: float) -> bool:
        """Take the job's run lock; steal it only from an engine whose heartbeat is gone."""
        key = lock_key(job_id)
        if self.redis.set(key, token, nx=True, px=_ms(ttl)):
            return True
        holder = self.redis.get(key)
        if holder is None:
            return bool(self.redis.set(key, token, nx=True, px=_ms(ttl)))
        owner = holder.rsplit("|", 1)[0]
        if owner != self.owner and not self.alive([owner])[owner]:
            return self.transition(key, holder, token, ttl)
        return False

    def unlock(self, job_id: str, token: str) -> None:
        _cad(self.redis, [lock_key(job_id)], [token])

    # -- changes ---------------------------------------------------------------------------
    def version(self) -> str | None:
        return self.redis.get(VERSION_KEY)

    def bump(self) -> None:
        self.redis.incr(VERSION_KEY)


def _cas_in_pipe(pipe: Any, key: str, expected: str, new: str, ttl: float) -> None:
    # EVAL, not EVALSHA: a NOSCRIPT reply inside a pipeline would fail the whole batch, and
    # the script body is a few dozen bytes.
    # execute_command, not pipe.eval(): redis-py's cluster pipeline refuses .eval() but
    # routes a raw EVAL by its one key like any other command.
    pipe.execute_command("EVAL", _cas.source, 1, key, expected, new, _ms(ttl))
