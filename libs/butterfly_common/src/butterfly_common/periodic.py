"""Background work that repeats: one daemon thread per loop, one way to stop, log and report.

Services used to hand-roll these threads, each with its own stop, error handling and
logging (some logged a stack every tick while Redis was down). :class:`Periodic` is the
one loop behind all of them:

- ``fn`` runs every ``interval`` seconds (the pause counts from the end of a run, so runs
  never pile up), ``jitter`` spreads processes started together, ``align`` makes every
  process tick together on the wall clock instead, ``paced`` lets ``fn`` return its own
  next pause (ruqi's fire loop sleeps until the next fire); ``wake()`` runs it now;
- ``stop(timeout)`` ends the loop at once (the pause is an ``Event`` wait, never a sleep)
  and may be called any number of times; :func:`stop_all` - called by
  ``serve.stop_background``, which gunicorn's ``worker_exit`` runs - stops whatever a
  service's stoppers left running;
- with a ``lease`` (:class:`~butterfly_common.coordination.Lease`), only its holder among
  all processes sharing the lease key runs ``fn``: each tick renews it (or tries to take
  it), a lost lease stops the runs until it is won again, and stop releases it so a peer
  takes over at its next tick instead of after the TTL;
- an outage is logged once (its first failure, with the traceback) and its recovery once;
- its state goes to ``/readyz?detail=1`` (``loops``; a loop whose thread died makes
  ``/readyz`` 503) and to Prometheus: ``butterfly_periodic_last_success_timestamp``,
  ``butterfly_periodic_last_failure_timestamp``, ``butterfly_periodic_failures_total``,
  ``butterfly_periodic_consecutive_failures`` and ``butterfly_periodic_lease_held``,
  each by ``loop``.

See docs/architecture.md, "Background loops".
"""

from __future__ import annotations

import logging
import os
import random
import secrets
import socket
import threading
import time
from collections.abc import Callable
from typing import Any, Self

from . import health
from .coordination import Lease

__all__ = ["Periodic", "running", "states", "stop_all"]

log = logging.getLogger("butterfly.periodic")

#: With ``align``, a run starts this long after the wall-clock multiple of the interval,
#: so ``time.time() // interval`` read inside ``fn`` is the new tick on every host.
ALIGN_SLACK = 0.05
#: The health check (a ``/readyz`` entry) that names loops whose thread died.
HEALTH_CHECK = "periodic"

_lock = threading.Lock()
_running: list[Periodic] = []


class Periodic:
    """Run ``fn`` every ``interval`` seconds on a daemon thread until :meth:`stop`.

    ``jitter``: each pause is ``interval * uniform(1 - jitter, 1 + jitter)`` (0 <= jitter
    < 1). ``first_delay``: the pause before the first run (default: one pause; 0 runs at
    once). ``retry``: the pause after a failed run (default: the usual one). ``align``:
    pause until just past the next multiple of ``interval`` of the wall clock instead.
    ``lease``: run only while holding it (its TTL must outlast a pause). ``paced``: ``fn``
    returns the pause before its next run (seconds, at most ``interval``), for a loop that
    sleeps until its next due item. ``logger``: where outages, recoveries and lease
    changes are logged (the service's own logger).
    """

    def __init__(self, name: str, interval: float, fn: Callable[[], object], *,
                 jitter: float = 0.0, lease: Lease | None = None,
                 first_delay: float | None = None, retry: float | None = None,
                 align: bool = False, paced: bool = False,
                 logger: logging.Logger | None = None) -> None:
        if not interval > 0:
            raise ValueError(f"periodic {name}: interval must be > 0, not {interval!r}")
        if not 0 <= jitter < 1:
            raise ValueError(f"periodic {name}: jitter must be in [0, 1), not {jitter!r}")
        longest = max(interval * (1 + jitter) + (ALIGN_SLACK if align else 0.0), retry or 0)
        if lease is not None and lease.ttl <= longest:
            raise ValueError(f"periodic {name}: lease TTL {lease.ttl}s must outlast the "
                             f"longest pause ({longest:g}s), else it lapses between runs")
        self.name = name
        self.interval = interval
        self.fn = fn
        self.jitter = jitter
        self.lease = lease
        self.first_delay = first_delay
        self.retry = retry
        self.align = align
        self.paced = paced
        #: with ``paced``: the pause the last successful run asked for
        self._asked: float | None = None
        self.log = logger or log
        #: This process's name in the lease (unique per loop, so two loops of one process
        #: compete like two processes would).
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._stopping = threading.Event()
        self._tick = threading.Event()
        self._state_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._token: int | None = None
        self.runs = 0
        self.failures = 0
        self.consecutive_failures = 0
        self.last_success: float | None = None
        self.last_failure: float | None = None
        self.last_error = ""
        self._outage_since: float | None = None

    # -- life cycle ------------------------------------------------------------------------
    def start(self) -> Self:
        """Start the thread (again: no-op). A stopped loop cannot be started again."""
        if self._stopping.is_set():
            raise RuntimeError(f"periodic {self.name} was stopped; make a new one")
        with self._state_lock:
            if self._thread is not None:
                return self
            self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        _metrics().started(self)
        with _lock:
            _running.append(self)
        health.register(HEALTH_CHECK, _dead_loops)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """End the loop now: wake it, wait up to ``timeout`` s for a run in progress to
        finish (a run is bounded by its own socket timeouts), release the lease. Safe to
        call again, and from ``fn`` itself (then the loop ends after this run)."""
        self._stopping.set()
        self._tick.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive():
                self.log.warning("%s: still running %gs after stop; left behind", self.name,
                                 timeout)
        if thread is None or not thread.is_alive():
            with _lock:
                if self in _running:
                    _running.remove(self)

    def wake(self) -> None:
        """Run ``fn`` now instead of after the pause (a run in progress: once more after)."""
        self._tick.set()

    @property
    def stopped(self) -> bool:
        """True once :meth:`stop` was called."""
        return self._stopping.is_set()

    def alive(self) -> bool:
        """Whether the thread runs (False before start and after it ended)."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def holds_lease(self) -> bool | None:
        """Whether this loop holds its lease now (None: no lease)."""
        return None if self.lease is None else self._token is not None

    # -- the loop --------------------------------------------------------------------------
    def _run(self) -> None:
        delay = self._pause(failed=False) if self.first_delay is None else self.first_delay
        try:
            while not self._stopping.is_set():
                self._tick.wait(max(0.0, delay))
                self._tick.clear()
                if self._stopping.is_set():
                    break
                delay = self._pause(failed=not self.run_once())
        except BaseException as exc:  # SystemExit and the like from fn: the loop is over
            self.log.critical("%s: loop thread ended by %s; /readyz reports it", self.name,
                              type(exc).__name__, exc_info=exc)
        finally:
            self._release()
            if self._stopping.is_set():
                with _lock:
                    if self in _running:
                        _running.remove(self)

    def _pause(self, failed: bool) -> float:
        if self.paced and not failed and self._asked is not None:
            return min(self._asked, self.interval)
        if self.align:
            return self.interval - time.time() % self.interval + ALIGN_SLACK
        base = self.retry if failed and self.retry is not None else self.interval
        if self.jitter:
            base *= random.uniform(1 - self.jitter, 1 + self.jitter)  # noqa: S311 - spread
        return base

    def run_once(self) -> bool:
        """One tick on the calling thread: take or renew the lease, run ``fn``, record the
        outcome. False when it failed (logged when an outage starts)."""
        try:
            if self.lease is not None and not self._owns(self.lease):
                self._ok(ran=False)
                return True
            asked = self.fn()
            if self.paced:
                self._asked = float(asked)  # type: ignore[arg-type]
        except Exception as exc:
            self._failed(exc)
            return False
        self._ok(ran=True)
        return True

    def _owns(self, lease: Lease) -> bool:
        had = self._token
        if had is not None and lease.renew(self.holder, had):
            return True
        self._token = lease.acquire(self.holder)
        if self._token is not None and had is None:
            self.log.info("%s: this process runs it now (lease %s, token %d)", self.name,
                          lease.key, self._token)
        elif self._token is None and had is not None:
            self.log.warning("%s: lease %s lost to another process; not running it until "
                             "the lease is ours again", self.name, lease.key)
        _metrics().lease(self)
        return self._token is not None

    def _release(self) -> None:
        token, self._token = self._token, None
        if self.lease is not None and token is not None:
            try:
                self.lease.release(self.holder, token)
            except Exception as exc:  # Redis away: the lease runs out by its TTL
                self.log.warning("%s: lease %s not released (%s: %s); it lapses after "
                                 "%gs", self.name, self.lease.key, type(exc).__name__, exc,
                                 self.lease.ttl)
        _metrics().stopped(self)

    # -- outcome bookkeeping ---------------------------------------------------------------
    def _ok(self, ran: bool) -> None:
        now = time.time()
        with self._state_lock:
            failed_for = self.consecutive_failures
            since = self._outage_since
            self.consecutive_failures = 0
            self._outage_since = None
            if ran:
                self.runs += 1
                self.last_success = now
        if failed_for:
            self.log.warning("%s works again after %d failed run(s) over %.1fs", self.name,
                             failed_for, now - (since or now))
        _metrics().success(self, ran)

    def _failed(self, exc: Exception) -> None:
        now = time.time()
        with self._state_lock:
            first = self.consecutive_failures == 0
            self.runs += 1
            self.failures += 1
            self.consecutive_failures += 1
            self.last_failure = now
            self.last_error = f"{type(exc).__name__}: {exc}"[:300]
            if first:
                self._outage_since = now
        if first:  # once per outage: the traceback of its first failure, then silence
            self.log.warning("%s failed; retrying every %gs, logged again when it works: "
                             "%s: %s", self.name, self.retry or self.interval,
                             type(exc).__name__, exc, exc_info=exc)
        _metrics().failure(self)

    def state(self) -> dict[str, Any]:
        """What ``/readyz?detail=1`` shows for this loop."""
        with self._state_lock:
            return {
                "running": self.alive(),
                "interval": self.interval,
                "runs": self.runs,
                "last_success": _rounded(self.last_success),
                "last_failure": _rounded(self.last_failure),
                "consecutive_failures": self.consecutive_failures,
                "failures": self.failures,
                "last_error": self.last_error,
                "holds_lease": self.holds_lease,
            }

    def __repr__(self) -> str:
        return f"<Periodic {self.name} every {self.interval:g}s>"


def _rounded(ts: float | None) -> float | None:
    return None if ts is None else round(ts, 3)


# -- the process's loops ---------------------------------------------------------------------

def running() -> list[Periodic]:
    """The loops started and not yet stopped in this process, oldest first."""
    with _lock:
        return list(_running)


def states() -> dict[str, dict[str, Any]]:
    """``{name: state}`` of this process's loops (a repeated name gets ``#2``, ``#3``...)."""
    out: dict[str, dict[str, Any]] = {}
    for loop in running():
        name, n = loop.name, 1
        while name in out:
            n += 1
            name = f"{loop.name}#{n}"
        out[name] = loop.state()
    return out


def stop_all(timeout: float = 10.0) -> None:
    """Stop every loop still running, newest first (the process is shutting down)."""
    for loop in reversed(running()):
        try:
            loop.stop(timeout)
        except Exception:
            log.exception("stopping %s failed", loop.name)


def _dead_loops() -> str | None:
    """The ``/readyz`` check: loops whose thread ended although nobody stopped them."""
    dead = [loop.name for loop in running()
            if loop._thread is not None and not loop.stopped and not loop.alive()]
    return f"loop thread ended: {', '.join(dead)}" if dead else None


# -- metrics -----------------------------------------------------------------------------------

class _Metrics:
    """The Prometheus series, created on first use: not at import, since a service imports
    this module before ``butterfly serve`` sets ``PROMETHEUS_MULTIPROC_DIR`` (see
    ``serve.prepare_metrics_dir``)."""

    def __init__(self) -> None:
        from . import metrics

        self.m = metrics.periodic_metrics()

    def started(self, loop: Periodic) -> None:
        self.m.failures.labels(loop.name)  # the series exists at 0
        self.m.consecutive.labels(loop.name).set(0)
        if loop.lease is not None:
            self.m.lease_held.labels(loop.name).set(0)

    def lease(self, loop: Periodic) -> None:
        self.m.lease_held.labels(loop.name).set(1 if loop.holds_lease else 0)

    def success(self, loop: Periodic, ran: bool) -> None:
        if ran:
            self.m.last_success.labels(loop.name).set(loop.last_success or time.time())
        self.m.consecutive.labels(loop.name).set(0)

    def failure(self, loop: Periodic) -> None:
        self.m.failures.labels(loop.name).inc()
        self.m.last_failure.labels(loop.name).set(loop.last_failure or time.time())
        self.m.consecutive.labels(loop.name).set(loop.consecutive_failures)

    def stopped(self, loop: Periodic) -> None:
        if loop.lease is not None:
            self.m.lease_held.labels(loop.name).set(0)


_metrics_obj: _Metrics | None = None


def _metrics() -> _Metrics:
    global _metrics_obj
    if _metrics_obj is None:
        with _lock:
            if _metrics_obj is None:
                _metrics_obj = _Metrics()
    return _metrics_obj
