"""The Redis side of running each fire exactly once across replicas: ruqi's names for the
framework's coordination primitives (``butterfly_common.coordination``).

Every command touches ONE key (plain commands, non-transactional pipelines, or a one-key
Lua script), so it works unchanged through Twemproxy and on Redis Cluster. The engines are
:class:`~butterfly_common.coordination.Members` of group ``ruqi``; fire keys move by
compare-and-set; a job's overlap state is one hash changed by one script; job changes are a
:class:`~butterfly_common.coordination.Version`.

Keys (``ruqi:`` prefix):

======================  ======  ===========================================================
``fire:<job>:<ms>``     STRING  the fire's state: ``c|<owner>`` claimed, ``r|<owner>``
                                running, ``d|<owner>|<status>`` done (all with a TTL)
``node:<owner>``        STRING  an engine's heartbeat; missing = that engine is dead
``nodes``               ZSET    owner -> last heartbeat (for ``status`` only)
``own:node:<owner>``    STRING  the same heartbeat while the engine owns jobs: a stopping
                                engine drops it first, so peers take its jobs over at
                                once while it finishes its running fires
``own:nodes``           ZSET    owner -> last beat, of the group above
``lock:<job>``          STRING  the run lock of releases before overlap policies (unused)
``ov:<job>``            HASH    overlap policies: ``run`` (``<owner>|<ms>`` of the fire
                                running), ``exp`` (its lease end, server ms), ``q`` (the
                                buffered fires, JSON, oldest first), ``x:<token>``
                                (cancel_other: that run was displaced by the fire
                                named by the value); overlap.lua
``fails:<job>``         STRING  the job's consecutive failed runs (pause_on_failure)
``version``             STRING  bumped on every job change; engines poll it
``manual``              LIST    run_job requests for whichever engine pops first
``backfill``            LIST    backfill_job requests (a job's slots) for the same
``prune``               STRING  history retention lease (one pruner per interval)
======================  ======  ===========================================================
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from butterfly_common.coordination import Members, Version, cas, cas_many, ms
from butterfly_common.redis_client import Script, pipeline

PREFIX = "ruqi"
VERSION_KEY = f"{PREFIX}:version"
MANUAL_KEY = f"{PREFIX}:manual"
#: Backfill requests (jobs.backfill_job), one JSON item per call, for the first engine.
BACKFILL_KEY = f"{PREFIX}:backfill"
NODES_KEY = f"{PREFIX}:nodes"
PRUNE_KEY = f"{PREFIX}:prune"

CLAIMED, RUNNING, DONE = "c", "r", "d"
#: A fire waiting in a job's overlap buffer (``b|<owner>|<reqid>``): not watched, not lost.
BUFFERED = "b"
#: How long a buffered fire's key lives (the buffer's fires wait at most that long).
BUFFERED_TTL = 86400.0
_overlap = Script.from_package("butterfly_ruqi", "overlap.lua")


def overlap_key(job_id: str) -> str:
    return f"{PREFIX}:ov:{job_id}"


def fire_key(job_id: str, ms: int, manual: bool = False, backfill: bool = False) -> str:
    """The claim key of one (job, scheduled time); manual runs and backfills get their
    own namespaces (a backfill re-runs a slot that already ran on schedule, once)."""
    return f"{PREFIX}:fire:{job_id}:{'m' if manual else 'b' if backfill else ''}{ms}"


def failures_key(job_id: str) -> str:
    return f"{PREFIX}:fails:{job_id}"


#: A failure count is forgotten after this long without a run (seconds).
FAILURES_TTL = 30 * 86400


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


class Claims:
    """One engine's view of the shared claim keys; ``owner`` names the engine."""

    def __init__(self, redis: Any, owner: str) -> None:
        self.redis = redis
        self.owner = owner
        # the heartbeat TTL is given per beat (the engine's node_ttl)
        self.members = Members(redis, PREFIX, ttl=3.0)
        #: the engines that own a share of the jobs (rendezvous hashing over these)
        self.owners = Members(redis, f"{PREFIX}:own", ttl=3.0)
        self._version = Version(redis, VERSION_KEY)

    # -- fires ---------------------------------------------------------------------------
    def claim(self, keys: Sequence[str], ttls: Sequence[float], reqids: Sequence[str],
              running: bool = False) -> list[bool]:
        """SET NX every key in one round trip; True where this engine won the fire.

        The value carries the fire's reqid, so a peer that takes the fire over or records
        it ``lost`` uses the reqid the callee saw, not one of its own. ``running``: claim
        straight into the running phase (fires that go to an idle worker at once, see
        engine.py "Claiming")."""
        phase = RUNNING if running else CLAIMED
        pipe = pipeline(self.redis)
        for key, ttl, reqid in zip(keys, ttls, reqids, strict=True):
            pipe.execute_command("SET", key, f"{phase}|{self.owner}|{reqid}", "NX", "PX",
                                 ms(ttl))
        return [bool(ok) for ok in pipe.execute()]

    def start(self, key: str, ttl: float, reqid: str) -> bool:
        """claimed -> running, only if still ours (a peer may have taken it over)."""
        return cas(self.redis, key, f"{CLAIMED}|{self.owner}|{reqid}",
                   f"{RUNNING}|{self.owner}|{reqid}", ttl)

    def start_many(self, fires: Sequence[tuple[str, float, str]]) -> list[bool]:
        """:meth:`start` for several ``(key, ttl, reqid)`` in one pipelined round trip."""
        return cas_many(self.redis, ((key, f"{CLAIMED}|{self.owner}|{reqid}",
                                      f"{RUNNING}|{self.owner}|{reqid}", ttl)
                                     for key, ttl, reqid in fires))

    def transition(self, key: str, expected: str, new: str, ttl: float) -> bool:
        """Compare-and-set one fire key (take-overs and marking a fire done)."""
        return cas(self.redis, key, expected, new, ttl)

    def finish_many(self, items: Iterable[tuple[str, str, str, float]]) -> None:
        """Mark fires done: ``(key, expected, new, ttl)`` compare-and-sets, pipelined."""
        cas_many(self.redis, items)

    def peek(self, keys: Sequence[str]) -> list[str | None]:
        pipe = pipeline(self.redis)
        for key in keys:
            pipe.execute_command("GET", key)
        return pipe.execute() if keys else []

    # -- engines ---------------------------------------------------------------------------
    def heartbeat(self, ttl: float, owning: bool = True) -> None:
        self.members.beat(self.owner, ttl)
        if owning:
            self.owners.beat(self.owner, ttl)

    def resign(self) -> None:
        """Stop owning jobs (a graceful stop's first step): peers take them over at their
        next poll, while our heartbeat still covers the fires we are finishing."""
        self.owners.leave(self.owner)

    def leave(self) -> None:
        """Graceful stop: peers see us gone at once and take over what we claimed."""
        self.owners.leave(self.owner)
        self.members.leave(self.owner)

    def live_owners(self) -> list[str]:
        """Engines that own a share of the jobs now (heartbeat key exists)."""
        return self.owners.live()

    def alive(self, owners: Iterable[str]) -> dict[str, bool]:
        return self.members.alive(owners)

    def nodes(self, within: float) -> list[str]:
        """Engines that beat within ``within`` seconds (by their own clocks)."""
        return self.members.seen(within)

    def live_nodes(self) -> list[str]:
        """Engines whose heartbeat key exists now (server-side TTL: no clock skew)."""
        return self.members.live()

    def forget_nodes(self, older_than: float) -> None:
        self.members.forget(older_than)
        self.owners.forget(older_than)

    # -- overlap policies (overlap.lua, one key per job) ------------------------------------
    def overlap_acquire(self, job_id: str, token: str, lease: float, limit: int,
                        item: str, cancel: bool = False) -> tuple[str, str]:
        """``("run" | "cancel" | "buffered" | "skip", holder)``: run now, run now and
        displace the holder (``cancel``: cancel_other), wait in the job's buffer (``limit``
        places), or skip. A holder whose engine has no heartbeat is replaced."""
        key = overlap_key(job_id)
        holder, _ = _overlap(self.redis, [key], ["peek", token, ms(lease), 0, "", ""])
        steal = ""
        if holder:
            owner = str(holder).rsplit("|", 1)[0]
            if owner != self.owner and not self.alive([owner])[owner]:
                steal = str(holder)
        verdict, other = _overlap(self.redis, [key],
                                  ["acquire", token, ms(lease), limit, item, steal,
                                   "1" if cancel else ""])
        return str(verdict), str(other)

    def overlap_release(self, job_id: str, token: str, lease: float) -> tuple[str, str]:
        """End the run ``token``: ``("next", item)`` hands us the oldest buffered fire."""
        verdict, item = _overlap(self.redis, [overlap_key(job_id)],
                                 ["release", token, ms(lease), 0, "", ""])
        return str(verdict), str(item)

    def overlap_displaced(self, runs: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
        """``(holder, displaced by)`` now of each ``(job id, token)`` run, in one pipelined
        round trip (one key a command): a run whose job's holder is no longer its token
        was displaced; the second field names the fire that did it (cancel_other)."""
        pipe = pipeline(self.redis)
        for job_id, token in runs:
            pipe.execute_command("HMGET", overlap_key(job_id), "run", f"x:{token}")
        return [(str(run or ""), str(by or "")) for run, by in pipe.execute()] if runs else []

    def overlap_state(self, job_id: str) -> tuple[str, int]:
        """``(holder, waiting)`` of a job (status and tests)."""
        holder, waiting = _overlap(self.redis, [overlap_key(job_id)],
                                   ["peek", "", 1, 0, "", ""])
        return str(holder), int(waiting)

    # -- pause_on_failure ------------------------------------------------------------------
    def count_run(self, job_id: str, failed: bool) -> int:
        """The job's consecutive failures after this run (one key: INCR, or DEL on success);
        shared by every replica."""
        key = failures_key(job_id)
        if not failed:
            self.redis.delete(key)
            return 0
        pipe = pipeline(self.redis)
        pipe.execute_command("INCR", key)
        pipe.execute_command("EXPIRE", key, FAILURES_TTL)
        return int(pipe.execute()[0])

    # -- changes ---------------------------------------------------------------------------
    def version(self) -> str | None:
        """The raw version value (None before the first change): engines compare it."""
        return self.redis.get(VERSION_KEY)

    def bump(self) -> None:
        self._version.bump()
