"""Crash recovery: fires this engine lost the claim for, watched until they are done.

A fire's key says who holds it (``c|owner`` claimed, ``r|owner`` running). While the owner
heartbeats, nothing happens. When its heartbeat key is gone:

* ``c|dead`` - it never started: take it over (compare-and-set) and run it here. The
  owner's own start is a compare-and-set from ``c|owner`` too, so at most one runs it.
* ``r|dead`` - it started and the outcome is unknown: it is NOT run again (the command
  may already have had its effect; at-most-once for side effects) but recorded as
  ``lost``, so the history shows every fire.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from .claims import CLAIMED, DONE, RUNNING, Claims, parse_state
from .schedule import DONE_TTL_EXTRA, Fire

log = logging.getLogger("butterfly.ruqi.engine")

#: A lost claim is first checked this long after it was lost (most are done by then).
WATCH_AFTER = 0.3
#: Re-check period of a fire whose owner is alive (a long run).
RECHECK = 1.0


class Watcher:
    """The watch list of one engine; :meth:`check` runs on the engine's control thread."""

    def __init__(self, claims: Claims, submit: Callable[[Fire], object],
                 record_lost: Callable[[Fire, str], None],
                 clock: Callable[[], float] = time.time) -> None:
        self.claims = claims
        self.clock = clock
        self.owner = claims.owner
        self._submit = submit
        self._record_lost = record_lost
        self._lock = threading.Lock()
        self._fires: dict[str, Fire] = {}
        self.taken_over = 0
        self.recorded_lost = 0

    def __len__(self) -> int:
        return len(self._fires)

    def add(self, fire: Fire, now: float) -> None:
        fire.check_at = now + WATCH_AFTER
        with self._lock:
            self._fires[fire.key] = fire

    def check(self) -> None:
        """Look at every due entry in two pipelined round trips; act on dead owners."""
        now = self.clock()
        with self._lock:
            fires = [f for f in self._fires.values() if f.check_at <= now]
        if not fires:
            return
        values = self.claims.peek([f.key for f in fires])
        states = [parse_state(v) for v in values]
        alive = self.claims.alive(owner for phase, owner, _ in states
                                  if phase in (CLAIMED, RUNNING) and owner != self.owner)
        for fire, value, (phase, owner, reqid) in zip(fires, values, states, strict=True):
            drop = True
            if phase in (CLAIMED, RUNNING) and owner == self.owner and reqid == fire.reqid:
                # our own claim: a retried claim batch whose first reply was lost (the SET
                # was applied; as running when the batch went to idle workers). Nobody
                # else would ever run or record it.
                log.warning("fire %s: our claim's reply was lost; running it", fire.key)
                fire.started = phase == RUNNING
                self._submit(fire)
            elif phase in (CLAIMED, RUNNING) and owner != self.owner:
                if alive.get(owner, True):
                    horizon = fire.ts + fire.late_limit + DONE_TTL_EXTRA
                    if phase == RUNNING:
                        horizon += fire.spec.timeout
                    drop = now > horizon
                    fire.check_at = now + RECHECK
                elif value is not None:  # a phase was parsed, so the key had a value
                    self._take_over(fire, value, phase, owner, reqid)
            if drop:
                with self._lock:
                    self._fires.pop(fire.key, None)

    def _take_over(self, fire: Fire, value: str, phase: str, owner: str, reqid: str) -> None:
        fire.reqid = reqid or fire.reqid  # one reqid per fire across the cluster: the owner's
        if phase == CLAIMED:
            if self.claims.transition(fire.key, value, f"{CLAIMED}|{self.owner}|{fire.reqid}",
                                      fire.claim_ttl):
                self.taken_over += 1
                log.warning("took over fire %s from dead engine %s", fire.key, owner)
                self._submit(fire)
            return
        if self.claims.transition(fire.key, value, f"{DONE}|{self.owner}|lost",
                                  fire.done_ttl):
            self.recorded_lost += 1
            log.warning("fire %s: engine %s died while running it; recorded as lost",
                        fire.key, owner)
            self._record_lost(fire, owner)
