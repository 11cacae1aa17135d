"""The scheduler engine: every replica runs one; each (job, scheduled time) runs once.

How it holds together (see also claims.py for the keys):

* Fire times. APScheduler 3.x triggers, rebuilt from plain DB columns, compute the same
  instants on every replica (interval jobs count from a stored start time). Each engine keeps
  a heap of next fire times and sleeps precisely until the earliest one. APScheduler's own
  job stores are not used: sharing one between processes is what its FAQ warns against.
* Ownership. The engines that own jobs are ``Members`` of group ``ruqi:own`` (heartbeat
  ``ruqi:own:node:<me>``, TTL ``node_ttl``, beside the ``ruqi`` group's heartbeat that says
  the engine is alive; a stopping engine leaves ``ruqi:own`` first, so its jobs move at
  once while it finishes its running fires). Rendezvous hashing of the job id over them
  (``owner_of``) gives every job one owner, and only the owner claims its fires: one claim
  attempt per fire across the cluster, instead of every replica racing for every fire.
  The other engines park the job when it first comes due (no heap entry: the fire loop
  wakes for its own jobs only). When an engine's heartbeat is gone, the next membership
  poll (``poll_interval``) moves its jobs to the survivors (rendezvous: only its jobs
  move), and each new owner unparks them and claims their run times from
  ``misfire_grace_time + node_ttl`` back, so a dead owner's last fires run late (or are
  recorded ``missed``), never silently vanish.
* Claiming. The owner sends ``SET ruqi:fire:<job>:<ms> c|<me> NX PX ttl`` (pipelined). The
  claim key stays the safety net while views of the membership differ for a moment (a
  joining engine and its peers both claim, a stalled engine comes back): exactly one SET
  wins. The winner moves the key to ``r|<me>`` (compare-and-set) right before starting
  the command, and to ``d|<me>|<status>`` only after the history row is committed
  (history.py). When the executor has an idle worker for every fire of a claim round
  (reserved under the lock before the SET), the fires are claimed as ``r|<me>`` at once:
  the ``c`` phase is there for fires that WAIT for a worker (a dead owner's waiting fires
  are taken over and run); a fire that goes straight to a worker is as good as started,
  and the moment between its claim and its command is hardly longer than the one between
  a start and its command, in which a crash was always recorded ``lost``. That saves a
  round trip and a Lua call per fire.
* Overload. A fire waits for a worker in the executor's queue. When the next fire of a
  job is claimed (in a later claim round) while an earlier one still waits, more than
  ``coalesce_after`` (5 s) past its time, the engine is not keeping up with that job: the
  waiting one is coalesced - marked running and recorded ``missed`` at once by the fire
  loop, never run - into the newer one. The backlog thus stays within ``coalesce_after``
  (instead of the misfire grace), the fires that do run are at most about that late, and
  it drains within seconds once the CPU is back. Fires claimed in one round (a catch-up
  after a restart) are not coalesced: ``coalesce=false`` still runs each run time within
  the grace.
* Crash handling. An engine that loses a claim (a fire a peer claimed during a
  membership change, or one a dead owner left) keeps it in a watch list until it sees
  ``d``. When a watched fire's holder has no heartbeat:
  - ``c|dead`` (claimed, never started): a peer takes it over by compare-and-set and runs
    it, if still within the misfire grace - no miss, and no double since the owner's own
    start is a compare-and-set too. This is where the engine is at-least-once-safe.
  - ``r|dead`` (started, outcome unknown): the command may already have had its effect, so
    it is NOT run again (at-most-once for side effects); a peer records it as ``lost``.
    Topic commands publish with msg_id ``ruqi:<job>:<ms>``, so even a repeat would not
    queue twice.
  An engine stopped gracefully deletes its heartbeat after finishing its running fires,
  so peers take over its unstarted claims at once.
* Misfires and coalescing follow APScheduler: all run times between the cursor and now are
  computed; with ``coalesce`` only the latest runs (the others are recorded ``missed``); a
  run time later than ``misfire_grace_time`` when it would start is not run - the engine
  that claims it records it ``missed``.
* Catch-up (schedule.due_times). After an outage of the fleet or a pause, the run times
  within the job's window - ``max(misfire_grace_time, catchup_window)`` - run, each once
  (``Fire.catchup``: it may start up to the window late, and is never coalesced), and
  the older ones are claimed (straight as running: nothing runs) only to be recorded
  ``missed`` with the reason, by the claiming thread (the first ``MAX_MISSED_ROWS`` one by
  one, the rest as one row). Under an overlap policy other than
  ``allow`` the fires of one catch-up - or one backfill - are a chain: one task meets the
  policy with each in time order and hands the one that may run to another worker
  (``_submit_chain``), so ``buffer_all`` runs them in order. Done markers live for the
  window, so a restart whose cursor lags finds the fires that ran.
* Backfill (jobs.backfill_job). Requests are queued on ``ruqi:backfill``; the engine that
  pops one claims its slots under their own keys ``fire:<job>:b<ms>`` (kept a day) and
  runs them with no lateness limit.
* Propagation. The API bumps ``ruqi:version`` after every committed change; engines poll
  it every ``poll_interval`` (0.2 s) and reload the jobs table when it moved (and every 30 s
  regardless), so an edit on any replica is live everywhere within ~0.3 s. The DB column
  ``next_run_time`` is the restart cursor: set by add/modify/resume, advanced (fenced by
  the job's version, at most every 5 s per job) as fires are recorded. A lagging cursor
  never re-runs a fire: engines only claim run times within the job's window, and those
  still have their done marker (kept window + 30 s).
* Where the guarantee stops: Redis losing its data (a restart without persistence) loses
  the done markers, so a fire within the grace window could run again. An engine that
  stalls longer than ``node_ttl`` while running a fire gets it recorded ``lost`` by a peer;
  its own outcome, stored later, replaces that row (history rows are keyed by the fire,
  see history.py), so the history still has one row per fire.
* Overlap. A job's policy other than ``allow`` keeps its state in ONE hash,
  ``ruqi:ov:<job>`` (overlap.lua): the fire running (``run``, with a lease of timeout + 30 s
  in Redis server time) and the fires waiting (``q``). A fire finding a run goes into the
  buffer (``buffer_one``: one place, ``buffer_all``: ``BUFFER_ALL_LIMIT``) - its key moves
  to ``b|<me>|<reqid>`` and its history row says ``buffered`` - or, with no place left
  (``skip``, alias ``forbid``: none), is recorded ``skipped``. The engine ending a run takes
  the oldest waiting fire in the same script call and runs it (its key moves to ``r|<me>``,
  its outcome replaces the ``buffered`` row), until the buffer is empty. A holder whose
  heartbeat is gone, or whose lease ended, is replaced by the next fire; the buffer stays.
  ``cancel_other``: the new fire takes the run over in the same script call, which marks
  the old run displaced (``x:<token>`` in the same hash); the engine running the old fire
  - any replica - sees it on its ``ruqi-cancel`` loop (every ``poll_interval``), stops
  the command and records the fire ``canceled`` (cancel.py).
"""

from __future__ import annotations

import collections
import dataclasses
import heapq
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, cast

from butterfly_common import Refusal, db, mq, tracing
from butterfly_common.coordination import ms, once, owner_of
from butterfly_common.periodic import Periodic
from butterfly_common.reqid import new_reqid

from . import jobs, rules
from .cancel import Cancel, Displacements
from .cancel import holder_ts as _holder_ts
from .claims import (
    BACKFILL_KEY,
    BUFFERED,
    BUFFERED_TTL,
    DONE,
    MANUAL_KEY,
    PRUNE_KEY,
    RUNNING,
    Claims,
    fire_key,
)
from .commands import Command, parse_command, run_command
from .config import BUFFER_LIMITS, CANCEL_OTHER, OVERLAP_ALIASES, RuqiConfig
from .history import HistoryWriter, Record, prune
from .models import Job
from .pool import Call, RunPool
from .recovery import Watcher
from .schedule import (
    DONE_TTL_EXTRA,
    Fire,
    JobSpec,
    Slot,
    catch_up_fires,
    due_fires,
    make_owner,
)

log = logging.getLogger("butterfly.ruqi.engine")

FULL_RELOAD_EVERY = 30.0
HEARTBEAT_EVERY = 0.5
#: Attempts to mark a fire running when Redis errors (0.5 s, then 1 s apart).
START_TRIES = 3
#: Backfill fires claimed per round trip (one pipeline).
BACKFILL_CLAIM_CHUNK = 1000


def _policy(spec: JobSpec) -> str:
    return OVERLAP_ALIASES.get(spec.overlap, spec.overlap)


def _batch_topic(spec: JobSpec, script_dir: str | None) -> Command | None:
    """The topic command of a job whose backfill fires can be published in batches:
    ``allow`` (no run waits for another) and no waiting for the handler's result."""
    if _policy(spec) in BUFFER_LIMITS or spec.wait_result:
        return None
    try:
        command = parse_command(spec.cmd, script_dir, max_len=len(spec.cmd))
    except Refusal:
        return None
    return command if command.kind == "topic" else None


class Engine:
    """One replica's scheduler. ``start()`` it after fork; ``stop()`` is graceful."""

    def __init__(self, redis: Any, config: RuqiConfig, owner: str | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config
        #: Epoch seconds now: fire times are compared with it (tests inject a simulated
        #: clock to run a schedule across days - DST changes - in seconds).
        self.clock = clock
        self.owner = owner or make_owner()
        self.claims = Claims(redis, self.owner)
        self.writer = HistoryWriter(self.claims)
        self._lock = threading.Lock()
        self._specs: dict[str, JobSpec] = {}
        self._slots: dict[str, Slot] = {}
        self._heap: list[tuple[float, str, int]] = []
        self.watcher = Watcher(self.claims, self._submit, self._record_lost, clock)
        self._retry: list[Fire] = []
        self._nodes: list[str] = [self.owner]
        #: job id -> whether this engine owns it under ``_nodes`` (cleared when they change)
        self._owned: dict[str, bool] = {}
        #: job id -> its scheduled fires claimed here and still waiting for a worker
        self._queued: dict[str, list[Fire]] = {}
        #: job id -> its catch-up / backfill fires waiting for the job's chain task
        self._chains: dict[str, collections.deque[Fire]] = {}
        self._batch = 0
        #: False once stopping: the heartbeat then no longer claims a share of the jobs
        self._owning = True
        self._running = 0
        self._seen_version: str | None = "<never>"
        self._last_full = 0.0
        self._check_time = 0.0
        self._pool = RunPool(config.workers, "ruqi-run")
        #: The fire loop: sleeps until the earliest fire (or a wakeup), at most one claim
        #: round per ``claim_interval``, at least one a second; see :meth:`_fire_turn`.
        self._fire = Periodic("ruqi-fire", 1.0, self._fire_turn, paced=True, first_delay=0,
                              retry=0.05, logger=log)
        #: Propagation, membership, watch list, manual runs (every ``poll_interval``).
        self._control = Periodic("ruqi-control", config.poll_interval, self._control_once,
                                 logger=log)
        #: Its own loop, so a slow DB reload never makes peers think we died.
        self._beat = Periodic("ruqi-heartbeat", min(HEARTBEAT_EVERY, config.node_ttl / 3),
                              self._heartbeat, logger=log)
        #: History retention: tried every tenth of the interval, run once per interval
        #: across the fleet (``once`` on ``PRUNE_KEY``).
        self._prune = Periodic("ruqi-prune", config.history_prune_interval / 10,
                               self._prune_if_due, first_delay=0, logger=log)
        #: cancel_other: this engine's running fires, and the loop that stops the ones a
        #: newer fire displaced (its own loop: a slow reload must not delay a cancel)
        self.cancels = Displacements(self.claims)
        self._cancel = Periodic("ruqi-cancel", config.poll_interval, self._check_cancels,
                                logger=log)
        self.stats = {"claimed": 0, "lost_claims": 0, "missed": 0, "coalesced": 0,
                      "caught_up": 0, "parked": 0, "views": 0, "canceled": 0}

    # -- life cycle ----------------------------------------------------------------------
    def start(self) -> Engine:
        """Start the threads. Redis or the DB being down is not fatal: the threads retry."""
        self.writer.start()
        try:
            self.claims.heartbeat(self.config.node_ttl)
            self._control_once()
        except Exception:
            log.exception("engine %s starts without Redis/DB; retrying in the background",
                          self.owner)
        for loop in (self._fire, self._control, self._beat, self._prune, self._cancel):
            loop.start()
        log.info("engine %s started", self.owner)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop claiming, let running fires finish, store their history, then leave.

        The heartbeat goes on until the very end: peers must not think a fire we are
        still finishing belongs to a dead engine (they would record it lost, or steal its
        overlap lock).
        """
        self._fire.stop(timeout)
        self._control.stop(timeout)
        # No more claims from here: hand our jobs to the peers now, not after the drain.
        self._owning = False
        try:
            self.claims.resign()
        except Exception:
            log.exception("engine %s could not hand its jobs over", self.owner)
        self._prune.stop(timeout)  # a pass in progress ends first (bounded by timeout)
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._cancel.stop(timeout)  # after the drain: a running fire may still be displaced
        self.writer.stop(timeout)
        self._beat.stop(timeout)
        try:
            self.claims.leave()
        except Exception:
            log.exception("engine %s could not remove its heartbeat", self.owner)
        log.info("engine %s stopped", self.owner)

    @property
    def stopped(self) -> bool:
        """True once :meth:`stop` began."""
        return self._fire.stopped

    def tick(self) -> None:
        """Look for due fires now, not at the next planned turn (a test that jumps a
        simulated clock forward calls it)."""
        self._fire.wake()

    def wakeup(self) -> None:
        """Re-read the jobs now (also what a ``ruqi:version`` bump does on every replica)."""
        self._seen_version = "<wakeup>"
        self._fire.wake()

    # -- the fire loop -------------------------------------------------------------------
    def _fire_turn(self) -> float:
        """One turn of the fire loop: claim what is due, if anything; the pause until the
        next turn: until the earliest fire, but at least ``claim_interval`` after a claim
        round (1,000 jobs at 1 s spread over the second otherwise made a round - a wake-up
        and a round trip - for nearly every fire) and at most a second."""
        if self._earliest() <= self.clock():
            self._fire_due()
            return min(max(self._earliest() - self.clock(), self.config.claim_interval), 1.0)
        return min(self._earliest() - self.clock(), 1.0)

    def _earliest(self) -> float:
        with self._lock:
            return self._heap[0][0] if self._heap else self.clock() + 1.0

    def _fire_due(self) -> None:
        now = self.clock()
        due: list[Fire] = []
        with self._lock:
            while self._heap and self._heap[0][0] <= now:
                ts, job_id, version = heapq.heappop(self._heap)
                slot = self._slots.get(job_id)
                if slot is None or slot.spec.version != version or slot.next_ts is None \
                        or slot.due(slot.next_ts) != ts \
                        or slot.parked:
                    continue
                if not self._owns(job_id):
                    # a peer's job: set aside until its owner leaves (_membership)
                    slot.parked = True
                    self.stats["parked"] += 1
                    continue
                found = due_fires(slot, now)
                fires, nxt = found.fires, found.next_ts
                if nxt is None and not fires and slot.spec.trigger == "date":
                    # a date job whose only run time is long gone: its row can go
                    self.writer.put(Record(row=None, delete=(slot.spec.id, slot.spec.version)))
                due.extend(fires)
                slot.next_ts = nxt
                if nxt is not None:
                    heapq.heappush(self._heap, (slot.due(nxt), job_id, version))
                else:
                    del self._slots[job_id]
        if due:
            self._claim(due)

    def _owns(self, job_id: str) -> bool:
        """Rendezvous hashing over the live engines (caller holds ``_lock``)."""
        owned = self._owned.get(job_id)
        if owned is None:
            owned = self._owned[job_id] = owner_of(job_id, self._nodes) == self.owner
        return owned

    def _membership(self, live: list[str]) -> None:
        """Adopt a new view of the live engines; claim what a departed owner left behind.

        Under ``_lock``. A job becomes ours only when its owner left (rendezvous: a member
        joining takes jobs away, never hands them out), and a job that was not ours is
        parked: each one that is ours now is unparked, its run times from the owner's
        last possible claim up to now are claimed, and it is due on schedule from now."""
        catch: list[Fire] = []
        with self._lock:
            old, self._nodes = self._nodes, live
            self._owned.clear()
            self.stats["views"] += 1
            gone = set(old) - set(live)
            if gone:
                now = self.clock()
                back = min(self.config.node_ttl + 2 * self.config.poll_interval + 1.0,
                           DONE_TTL_EXTRA)
                for job_id, slot in self._slots.items():
                    if not slot.parked or not self._owns(job_id):
                        continue
                    slot.parked = False
                    since = now - slot.spec.misfire_grace_time - back
                    catch.extend(catch_up_fires(slot, since, now))
                    slot.next_ts = rules.first_fire(slot.trig, slot.tz, now)
                    if slot.next_ts is not None:
                        heapq.heappush(self._heap, (slot.due(slot.next_ts), job_id,
                                                    slot.spec.version))
                self.stats["caught_up"] += len(catch)
        if gone or len(live) != len(old):
            log.info("engine %s: live engines %s (gone: %s); %d run times caught up",
                     self.owner, live, sorted(gone), len(catch))
        if catch:
            self._claim(catch)

    def _claim(self, fires: list[Fire]) -> None:
        missed = [f for f in fires if f.missed is not None]
        if missed:
            fires = [f for f in fires if f.missed is None]
            self._claim_missed(missed)
            if not fires:
                return
        with self._lock:
            # An idle worker for each: reserve them and claim the fires as running.
            direct = self._running + len(fires) <= self.config.workers
            if direct:
                self._running += len(fires)
        try:
            won = self.claims.claim([f.key for f in fires], [f.claim_ttl for f in fires],
                                    [f.reqid for f in fires], running=direct)
        except Exception:
            log.exception("claiming %d fires failed; retrying within their grace", len(fires))
            with self._lock:
                if direct:
                    self._running -= len(fires)
                self._retry.extend(fires)
            return
        now = self.clock()
        with self._lock:
            self._batch += 1
            batch = self._batch
            if direct:
                self._running -= won.count(False)  # no worker needed for those
        superseded: list[Fire] = []
        chains: dict[str, list[Fire]] = {}
        calls: list[Call] = []
        for fire, ok in zip(fires, won, strict=True):
            if ok:
                self.stats["claimed"] += 1
                fire.batch = batch
                fire.started = direct
                if (fire.catchup or fire.backfill) and fire.missed is None \
                        and _policy(fire.spec) in BUFFER_LIMITS:
                    chains.setdefault(fire.spec.id, []).append(fire)
                else:
                    superseded += self._submit(fire, reserved=direct, calls=calls)
            else:
                self.stats["lost_claims"] += 1
                self.watcher.add(fire, now)
        self._hand_over(calls)
        for chain in chains.values():
            self._submit_chain(chain, reserved=direct)
        if superseded:
            self._coalesce(superseded)

    def _claim_missed(self, fires: list[Fire]) -> None:
        """Fires that only get a ``missed`` row (older than the catch-up window, or
        coalesced): claimed straight as running - nothing runs, so nothing can run twice
        - and recorded here, without a worker (after an outage they are many)."""
        try:
            won = self.claims.claim([f.key for f in fires], [f.claim_ttl for f in fires],
                                    [f.reqid for f in fires], running=True)
        except Exception:
            log.exception("claiming %d missed fires failed; retrying", len(fires))
            with self._lock:
                self._retry.extend(fires)
            return
        now = self.clock()
        for fire, ok in zip(fires, won, strict=True):
            if ok:
                self.stats["claimed"] += 1
                self.stats["missed"] += 1
                self._record(fire, "missed", f"{RUNNING}|{self.owner}|{fire.reqid}", None,
                             None, fire.missed or "missed")
            else:
                self.stats["lost_claims"] += 1
                self.watcher.add(fire, now)

    def _submit_chain(self, fires: list[Fire], reserved: bool) -> None:
        """The catch-up or backfill fires of one job under an overlap policy other than
        ``allow``: one task per job meets the policy with each, in time order (the first
        runs, the next ones wait in the buffer or are skipped, as the policy says), so they
        run in order; fires of a later claim round join the job's chain if it is still
        going. ``allow`` fires are submitted one by one (started in order, side by side)."""
        job_id = fires[0].spec.id
        with self._lock:
            if not reserved:
                self._running += len(fires)
            chain = self._chains.get(job_id)
            if chain is not None:
                chain.extend(fires)
                return
            self._chains[job_id] = collections.deque(fires)
        try:
            self._pool.submit(self._execute_chain, job_id)
        except RuntimeError:  # pool shut down: leave the claims for a peer to take over
            with self._lock:
                self._running -= len(self._chains.pop(job_id, ()))

    def _execute_chain(self, job_id: str) -> None:
        while True:
            with self._lock:
                chain = self._chains.get(job_id)
                if not chain:
                    self._chains.pop(job_id, None)
                    return
                fire = chain.popleft()
            try:
                self._execute_inner(fire, hand_off=True)
            except Exception:
                log.exception("fire %s crashed", fire.key)
            finally:
                with self._lock:
                    self._running -= 1

    def _submit(self, fire: Fire, reserved: bool = False,
                calls: list[Call] | None = None) -> list[Fire]:
        """Queue a won fire; returns the waiting fires of the same job it supersedes (see
        "Overload" above). ``reserved``: ``_claim`` counted it in ``_running`` already.
        A fire claimed as running never waits, so it is never coalesced. ``calls``: add
        its run there, for :meth:`_hand_over` (a claim round's fires in one hand-off)."""
        replaced: list[Fire] = []
        job_id = fire.spec.id
        with self._lock:
            if not reserved:
                self._running += 1
            if not (fire.manual or fire.started or fire.catchup or fire.backfill
                    or fire.missed is not None):
                waiting = self._queued.setdefault(job_id, [])
                limit = self.clock() - self.config.coalesce_after
                for old in waiting:
                    if old.batch < fire.batch and old.ts < fire.ts and old.ts < limit:
                        old.superseded = fire.ts
                        replaced.append(old)
                if replaced:
                    waiting[:] = [w for w in waiting if w.superseded is None]
                waiting.append(fire)
        if calls is not None:
            calls.append((self._execute, (fire,)))
        else:
            self._hand_over([(self._execute, (fire,))])
        return replaced

    def _hand_over(self, calls: list[Call]) -> None:
        """Give the workers the runs :meth:`_submit` queued (one lock and one wake-up for
        a claim round); when the pool is shut down, leave the claims for a peer."""
        if not calls:
            return
        try:
            self._pool.submit_many(calls)
        except RuntimeError:
            with self._lock:
                for _, (fire,) in calls:
                    self._running -= 1
                    self._unqueue(fire)

    def _unqueue(self, fire: Fire) -> None:
        """Forget a fire that is leaving the queue (caller holds ``_lock``)."""
        waiting = self._queued.get(fire.spec.id)
        if waiting is not None:
            if fire in waiting:
                waiting.remove(fire)
            if not waiting:
                del self._queued[fire.spec.id]

    def _coalesce(self, fires: list[Fire]) -> None:
        """Record superseded fires ``missed`` now, from the fire loop: within the grace,
        whatever the workers' backlog (their queue entries are then no-ops)."""
        try:
            started = self.claims.start_many([(f.key, f.claim_ttl, f.reqid) for f in fires])
        except Exception:
            log.exception("coalescing %d fires failed; the workers will run them", len(fires))
            for fire in fires:  # a second queue entry is harmless: starting is a CAS
                fire.superseded = None
                self._submit(fire)
            return
        for fire, ok in zip(fires, started, strict=True):
            if not ok:
                continue
            self.stats["coalesced"] += 1
            self.stats["missed"] += 1
            self._record(fire, "missed", f"{RUNNING}|{self.owner}|{fire.reqid}", None, None,
                         f"coalesced: the engine was behind, the run of "
                         f"{fire.superseded:.3f} replaced this one before it could start")
        log.warning("engine %s is behind: %d waiting fires coalesced into newer ones",
                    self.owner, len(fires))

    # -- running one fire ----------------------------------------------------------------
    def _execute(self, fire: Fire) -> None:
        with self._lock:
            self._unqueue(fire)
            superseded = fire.superseded is not None
        try:
            if not superseded:  # else the fire loop records it (_coalesce)
                self._execute_inner(fire)
        except Exception:
            log.exception("fire %s crashed", fire.key)
        finally:
            with self._lock:
                self._running -= 1

    def _execute_inner(self, fire: Fire, hand_off: bool = False) -> None:
        """Run one fire under its job's overlap policy. ``hand_off`` (a chain, see
        :meth:`_submit_chain`): a fire that may run is handed to another worker, so the
        chain meets the policy with its next fire while this one runs."""
        spec = fire.spec
        running = f"{RUNNING}|{self.owner}|{fire.reqid}"
        late = self.clock() - fire.ts
        tag = "[backfill] " if fire.backfill else ""
        if fire.missed is not None or (not fire.manual and late > fire.late_limit):
            # Marked running first, like a real start: a peer that took the claim over
            # meanwhile runs it, and this engine must then record nothing (one row a fire).
            if self._begin(fire):
                self.stats["missed"] += 1
                limit = (f"catch-up window={spec.window:g}s" if fire.catchup
                         else f"misfire_grace_time={spec.misfire_grace_time}s")
                self._record(fire, "missed", running, None, None,
                             fire.missed or f"started {late:.3f}s late, {limit}")
            return
        policy = _policy(spec)
        if policy not in BUFFER_LIMITS:  # allow: fires run side by side
            if self._begin(fire):
                self._run(fire, running, tag)
            return
        if not self._begin(fire):
            return
        token = f"{self.owner}|{round(fire.ts * 1000)}"
        lease = spec.timeout + 30
        item = json.dumps({"ts": fire.ts, "key": fire.key, "reqid": fire.reqid,
                           "by": self.owner, "bf": fire.backfill})
        verdict, holder = self.claims.overlap_acquire(spec.id, token, lease,
                                                      BUFFER_LIMITS[policy], item,
                                                      cancel=policy == CANCEL_OTHER)
        if verdict == "cancel":
            log.info("fire %s of job %s cancels the run of %s (overlap=cancel_other)",
                     fire.key, spec.id, _holder_ts(holder))
        if verdict == "skip":
            full = " (the buffer is full)" if BUFFER_LIMITS[policy] else ""
            self._record(fire, "skipped", running, None, None,
                         f"{tag}skipped: overlap{full}: the run of {_holder_ts(holder)} is "
                         f"still active (overlap={spec.overlap})")
            return
        if verdict == "buffered":
            waiting = f"{BUFFERED}|{self.owner}|{fire.reqid}"
            if self.claims.transition(fire.key, running, waiting, BUFFERED_TTL):
                self._record(fire, "buffered", None, None, None,
                             f"{tag}buffered: waits for the run of {_holder_ts(holder)} "
                             f"(overlap={spec.overlap})")
            return
        if hand_off:
            self._hand_off(fire, running, token, lease, tag)
            return
        try:
            self._run(fire, running, tag, token)
        finally:
            self._drain_buffer(spec.id, token, lease)

    def _hand_off(self, fire: Fire, running: str, token: str, lease: float,
                  tag: str) -> None:
        """Run a chain's fire (and then the buffer behind it) on another worker."""
        def task() -> None:
            try:
                try:
                    self._run(fire, running, tag, token)
                finally:
                    self._drain_buffer(fire.spec.id, token, lease)
            except Exception:
                log.exception("fire %s crashed", fire.key)
            finally:
                with self._lock:
                    self._running -= 1

        with self._lock:
            self._running += 1
        try:
            self._pool.submit(task)
        except RuntimeError:  # shutting down: run it here
            task()

    def _run(self, fire: Fire, running: str, note: str = "", token: str = "") -> None:
        """Run the command of a fire marked ``running``; record its outcome. ``token``:
        the fire's overlap run; under cancel_other it is watched while the command runs,
        and a displaced one is stopped and recorded ``canceled``."""
        spec = fire.spec
        cancel: Cancel | None = None
        if token and _policy(spec) == CANCEL_OTHER:
            cancel = self.cancels.add(spec.id, token)
        try:
            self._run_watched(fire, running, note, cancel)
        finally:
            if cancel is not None:
                self.cancels.remove(spec.id, token)

    def _run_watched(self, fire: Fire, running: str, note: str,
                     cancel: Cancel | None) -> None:
        spec = fire.spec
        started = self.clock()
        with tracing.span(f"fire {spec.id}", {
                "butterfly.job_id": spec.id, "butterfly.fire_key": fire.key,
                "butterfly.scheduled_time": fire.ts, "butterfly.lateness_s": started - fire.ts,
                "butterfly.reqid": fire.reqid}) as span:
            outcome = run_command(spec.cmd, script_dir=self.config.script_dir,
                                  timeout=spec.timeout, reqid=fire.reqid, job_id=spec.id,
                                  scheduled=fire.ts, wait_result=spec.wait_result,
                                  cancel=cancel)
            if span is not None and not outcome.success:
                span.set_attribute("butterfly.failed", True)
        ended = self.clock()
        if cancel is not None and cancel.close():
            self.stats["canceled"] += 1
            self._record(fire, "canceled", running, started, ended,
                         f"{note}{cancel.reason}\n{outcome.output}")
            return  # not a failure of the job: pause_on_failure does not count it
        self._record(fire, "ok" if outcome.success else "failed", running, started, ended,
                     note + outcome.output)
        if spec.pause_on_failure > 0 and not fire.backfill:  # a backfill never pauses it
            self._count_run(spec, outcome.success, outcome.output)

    def _drain_buffer(self, job_id: str, token: str, lease: float) -> None:
        """End our run under an overlap policy; run the fires buffered behind it, oldest
        first, each handed to us with the run (one Lua call on the job's key)."""
        while True:
            try:
                verdict, item = self.claims.overlap_release(job_id, token, lease)
            except Exception:
                log.exception("releasing the run of %s failed (its lease expires)", job_id)
                return
            if verdict != "next":
                return
            fire = self._adopt(job_id, item)
            if fire is None:
                continue
            running = f"{RUNNING}|{self.owner}|{fire.reqid}"
            waited = self.clock() - fire.ts
            tag = "[backfill] " if fire.backfill else ""
            try:
                self._run(fire, running, f"{tag}[buffered: ran {waited:.3f}s after its time, "
                                         f"behind an overlapping run] ")
            except Exception:
                log.exception("buffered fire %s crashed", fire.key)

    def _adopt(self, job_id: str, item: str) -> Fire | None:
        """A buffered fire handed to us: its key moves to running by us (from ``b`` or
        ``r`` of the engine that buffered it; set anew if it expired)."""
        try:
            data = json.loads(item)
            ts, key, reqid, by = float(data["ts"]), str(data["key"]), str(data["reqid"]), \
                str(data["by"])
            backfill = bool(data.get("bf"))
        except (ValueError, KeyError, TypeError):
            log.error("bad buffered fire %r", item)
            return None
        with self._lock:
            spec = self._specs.get(job_id)
        if spec is None:
            log.warning("buffered fire %s: its job is gone", key)
            return None
        fire = Fire(spec, ts, key, reqid, started=True, backfill=backfill)
        mine = f"{RUNNING}|{self.owner}|{reqid}"
        for prev in (f"{BUFFERED}|{by}|{reqid}", f"{RUNNING}|{by}|{reqid}"):
            if self.claims.transition(key, prev, mine, fire.claim_ttl):
                return fire
        if self.claims.redis.set(key, mine, nx=True, px=ms(fire.claim_ttl)):
            return fire
        log.warning("buffered fire %s was handled elsewhere", key)
        return None

    def _count_run(self, spec: JobSpec, success: bool, output: str) -> None:
        """pause_on_failure: the run that makes it N consecutive failures pauses the job,
        with a note saying so (the count is shared by every replica, in Redis)."""
        try:
            failures = self.claims.count_run(spec.id, not success)
            if failures != spec.pause_on_failure:
                return
            last = "".join(c if c.isprintable() else " " for c in output[:200]).strip()
            note = (f"paused by ruqi after {failures} consecutive failed runs "
                    f"(pause_on_failure={spec.pause_on_failure}); last output: {last}")
            if jobs.pause_job(spec.id, note=note, by="ruqi", now=self.clock(),
                              if_running=True):
                log.warning("job %s paused after %d consecutive failures", spec.id, failures)
        except Refusal:
            pass  # removed meanwhile
        except Exception:
            log.exception("pause_on_failure of job %s failed", spec.id)

    def _begin(self, fire: Fire) -> bool:
        """Whether this engine runs (or records) the fire: claimed as running already, or
        moved there now."""
        return fire.started or self._start(fire)

    def _start(self, fire: Fire) -> bool:
        """claimed -> running (compare-and-set); False when a peer took the fire over.

        A Redis error is retried (the client's breaker fails commands fast for about a
        second when Redis stalls, e.g. on a starved machine): giving up would leave the
        fire claimed by a live engine, so nobody would ever run or record it. A CAS whose
        reply was lost may have been applied: the key then already says we started."""
        mine = f"{RUNNING}|{self.owner}|{fire.reqid}"
        for attempt in range(START_TRIES):
            try:
                if self.claims.start(fire.key, fire.claim_ttl, fire.reqid):
                    return True
                if self.claims.peek([fire.key])[0] == mine:
                    return True
                break
            except Exception:
                if attempt == START_TRIES - 1:
                    raise
                log.warning("starting fire %s failed; retrying", fire.key, exc_info=True)
                time.sleep(0.5 * (attempt + 1))
        log.warning("fire %s was taken over by a peer before it started", fire.key)
        return False

    def _record(self, fire: Fire, status: str, expected: str | None, started: float | None,
                ended: float | None, output: str) -> None:
        spec = fire.spec
        row = {
            "job_id": spec.id, "job_name": spec.name, "cmd": spec.cmd, "status": status,
            "cmd_is_success": status == "ok", "cmd_output": output,
            "cmd_cost": round(ended - started, 6) if started and ended else 0.0,
            "scheduled_time": fire.ts, "start_time": started, "end_time": ended,
            "scheduler_name": self.owner, "reqid": fire.reqid, "manual": fire.manual,
            "fire_key": fire.key,
        }
        finish = ((fire.key, expected, f"{DONE}|{self.owner}|{status}", fire.done_ttl)
                  if expected else None)
        cursor = None if fire.manual or fire.cursor is None else \
            (spec.id, spec.version, fire.cursor)
        delete = (spec.id, spec.version) if fire.last and not fire.manual else None
        self.writer.put(Record(row, finish=finish, cursor=cursor, delete=delete))

    def _record_lost(self, fire: Fire, owner: str) -> None:
        self._record(fire, "lost", None, None, None,
                     f"engine {owner} died while running this fire; outcome unknown")

    # -- the loops: heartbeat; propagation, watch list, manual runs; retention ------------
    def _heartbeat(self) -> None:
        """One beat (the ``ruqi-heartbeat`` loop)."""
        self.claims.heartbeat(self.config.node_ttl, owning=self._owning)

    def _control_once(self) -> None:
        mono = time.monotonic()
        version = self.claims.version()
        full = mono - self._last_full >= FULL_RELOAD_EVERY or self._seen_version in (
            "<never>", "<wakeup>")
        if version != self._seen_version or full:
            self._seen_version = version
            if full:
                self._last_full = mono
            self.reload(full)
        self._check_time = self.clock()
        live = sorted({*self.claims.live_owners(), self.owner})
        if live != self._nodes:
            self._membership(live)
        self._retry_claims()
        self._drain_manual()
        self._drain_backfill()
        self.watcher.check()

    def reload(self, full: bool = True) -> None:
        """Re-read the jobs; rebuild the schedule of those whose definition changed.

        Not ``full``: only ``(id, version, start_time)`` of every job is read, then the
        rows whose fingerprint moved (every API edit bumps ``version``; a job removed and
        added again has a new ``start_time``). Adding 1,000 jobs used to make every replica
        re-read and compare every row several times a second. A full read still happens
        every ``FULL_RELOAD_EVERY`` seconds and on ``wakeup``, for rows edited by hand."""
        with db.database.connection_context():
            if full:
                rows = cast("list[tuple[Any, ...]]",
                            list(Job.select(*JobSpec.columns()).tuples()))
                present = {row[0] for row in rows}
            else:
                keys = cast("list[tuple[Any, ...]]",
                            list(Job.select(Job.id, Job.version, Job.start_time).tuples()))
                present = {k[0] for k in keys}
                moved = [k[0] for k in keys if (old := self._specs.get(k[0])) is None
                         or old.version != k[1] or old.start_time != float(k[2])]
                rows = []
                for i in range(0, len(moved), 500):
                    rows += cast("list[tuple[Any, ...]]", list(
                        Job.select(*JobSpec.columns()).where(Job.id.in_(moved[i:i + 500]))
                        .tuples()))
        fresh = {row[0]: JobSpec.from_tuple(row) for row in rows}
        with self._lock:
            for job_id in set(self._specs) - present:
                self._specs.pop(job_id)
                self._slots.pop(job_id, None)
            for job_id, spec in fresh.items():
                if self._specs.get(job_id) == spec:
                    continue
                self._specs[job_id] = spec
                self._slots.pop(job_id, None)
                if spec.paused or spec.next_run_time is None:
                    continue
                try:
                    tz = rules.get_timezone(spec.timezone)
                    trig = rules.build_trigger(spec.trigger, spec.rule, tz, spec.start_time,
                                               spec.start_at, spec.end_at)
                except Refusal as exc:
                    log.error("job %s cannot be scheduled: %s", job_id, exc.reason)
                    continue
                slot = Slot(spec, trig, tz, spec.next_run_time)
                self._slots[job_id] = slot
                heapq.heappush(self._heap, (slot.due(spec.next_run_time), job_id,
                                            spec.version))
            if len(self._heap) > 4 * len(self._slots) + 64:
                self._heap = [(s.due(s.next_ts), i, s.spec.version)
                              for i, s in self._slots.items()
                              if s.next_ts is not None and not s.parked]
                heapq.heapify(self._heap)
        self._fire.wake()

    def _retry_claims(self) -> None:
        with self._lock:
            fires, self._retry = self._retry, []
        now = self.clock()
        fires = [f for f in fires if f.manual or f.missed is not None
                 or now - f.ts <= f.late_limit]
        if fires:
            self._claim(fires)

    def _drain_manual(self, limit: int = 50) -> None:
        redis = self.claims.redis
        fires = []
        for _ in range(limit):
            raw = redis.lpop(MANUAL_KEY)
            if raw is None:
                break
            try:
                req = json.loads(raw)
                spec = self._specs.get(req["job_id"])
                if spec is None:  # added a moment ago on another replica
                    self.reload(full=False)
                    spec = self._specs.get(req["job_id"])
                ts = float(req["ts"])
                reqid = str(req.get("reqid") or new_reqid())
            except (ValueError, KeyError, TypeError):
                log.error("bad run_job request %r", raw)
                continue
            if spec is None:
                log.warning("run_job for unknown job %r dropped", req.get("job_id"))
                continue
            fires.append(Fire(spec, ts, fire_key(spec.id, round(ts * 1000), manual=True),
                              reqid, manual=True))
        if fires:
            self._claim(fires)

    def _drain_backfill(self) -> None:
        """Take one backfill request (jobs.backfill_job) off ``BACKFILL_KEY`` and claim
        its fires: each slot's own scheduled time, its own key ``fire:<job>:b<ms>``."""
        raw = self.claims.redis.lpop(BACKFILL_KEY)
        if raw is None:
            return
        try:
            req = json.loads(raw)
            job_id, stamps = str(req["job_id"]), [int(x) for x in req["ms"]]
            overlap = req.get("overlap")
        except (ValueError, KeyError, TypeError):
            log.error("bad backfill request %r", raw[:200])
            return
        with self._lock:
            spec = self._specs.get(job_id)
        if spec is None:
            self.reload(full=False)
            with self._lock:
                spec = self._specs.get(job_id)
        if spec is None:
            log.warning("backfill of unknown job %r dropped", job_id)
            return
        if overlap and overlap != spec.overlap:
            spec = dataclasses.replace(spec, overlap=overlap)
        log.info("engine %s: backfill %s of job %s, %d fires", self.owner,
                 req.get("reqid"), job_id, len(stamps))
        topic = _batch_topic(spec, self.config.script_dir)
        for i in range(0, len(stamps), BACKFILL_CLAIM_CHUNK):
            fires = [Fire(spec, ms_ / 1000, fire_key(job_id, ms_, backfill=True), new_reqid(),
                          backfill=True) for ms_ in stamps[i:i + BACKFILL_CLAIM_CHUNK]]
            if topic is None:
                self._claim(fires)
            else:
                self._claim_topic_batch(fires, topic)

    def _claim_topic_batch(self, fires: list[Fire], command: Command) -> None:
        """Claim backfill fires of a topic job under ``allow`` and publish them in one
        task (:meth:`_run_topic_batch`); a claim error leaves them to :meth:`_claim`."""
        try:
            won = self.claims.claim([f.key for f in fires], [f.claim_ttl for f in fires],
                                    [f.reqid for f in fires])
        except Exception:
            log.exception("claiming %d backfill fires failed; one by one", len(fires))
            self._claim(fires)
            return
        now = self.clock()
        batch: list[Fire] = []
        for fire, ok in zip(fires, won, strict=True):
            if ok:
                self.stats["claimed"] += 1
                batch.append(fire)
            else:  # another backfill of the same slot holds it: it runs there
                self.stats["lost_claims"] += 1
                self.watcher.add(fire, now)
        if not batch:
            return
        with self._lock:
            self._running += 1
        try:
            self._pool.submit(self._run_topic_batch, batch, command)
        except RuntimeError:  # pool shut down: the claims are a peer's to take over
            with self._lock:
                self._running -= 1

    def _run_topic_batch(self, fires: list[Fire], command: Command) -> None:
        """The fires of a backfill chunk that publish to a topic: started by one
        pipelined compare-and-set each, published by ``mq.publish_many`` (pipelined,
        ``PUBLISH_CHUNK`` a round trip) with the message id of each fire
        (``ruqi:<job>:<ms>``, as ``run_command`` uses: a repeat queues nothing), each
        recorded as its own fire. 10,000 slots one by one took two round trips each."""
        try:
            started = self.claims.start_many([(f.key, f.claim_ttl, f.reqid) for f in fires])
            go = [f for f, ok in zip(fires, started, strict=True) if ok]
            begun = self.clock()
            try:
                results = mq.publish_many([
                    {"topic": command.target, "data": command.body, "reqid": f.reqid,
                     "msg_id": f"ruqi:{f.spec.id}:{round(f.ts * 1000)}",
                     "timeout": f.spec.timeout} for f in go])
                outcomes = [(r.status != "no_consumer", f"msg_id={r.msg_id}"
                             if r.status != "no_consumer" else
                             f"publish failed: NoConsumer: no live consumer of topic "
                             f"{command.target}") for r in results]
            except Exception as exc:
                text = f"publish failed: {type(exc).__name__}: {exc}"[:500]
                outcomes = [(False, text)] * len(go)
            ended = self.clock()
            for fire, (ok, output) in zip(go, outcomes, strict=True):
                self._record(fire, "ok" if ok else "failed",
                             f"{RUNNING}|{self.owner}|{fire.reqid}", begun, ended,
                             f"[backfill] {output}")
        except Exception:
            log.exception("backfill batch of %d fires failed; unstarted ones are taken "
                          "over by the next backfill of the range", len(fires))
        finally:
            with self._lock:
                self._running -= 1

    def _check_cancels(self) -> None:
        """Stop this engine's cancel_other fires a newer fire displaced (``ruqi-cancel``)."""
        self.cancels.check()

    def _prune_if_due(self) -> None:
        """History retention, by the first engine of the fleet to try in each interval
        (``SET NX PX`` on ``PRUNE_KEY``); the ``ruqi-prune`` loop's work."""
        cfg = self.config
        if not once(self.claims.redis, PRUNE_KEY, cfg.history_prune_interval, self.owner):
            return
        removed = prune(cfg.history_max_age_days, cfg.history_max_per_job)
        if removed:
            log.info("history retention removed %d rows", removed)
        self.claims.forget_nodes(86400)

    # -- introspection -------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """What ``/ruqi/status`` shows: the original's fields plus the engine's counters."""
        with self._lock:
            nxt = self._heap[0][0] if self._heap else None
            scheduled, running = len(self._slots), self._running
        watching = len(self.watcher)
        now = self.clock()
        return {
            "instance": self.owner,
            "live_engines": list(self._nodes),
            "check_time": self._check_time,
            "next_wakeup_time": nxt,
            "wait_seconds": max(0.0, nxt - now) if nxt else None,
            "jobs_scheduled": scheduled,
            "fires_running": running,
            "fires_watched": watching,
            "history_pending": self.writer.pending(),
            **self.stats,
            "taken_over": self.watcher.taken_over,
            "recorded_lost": self.watcher.recorded_lost,
        }
