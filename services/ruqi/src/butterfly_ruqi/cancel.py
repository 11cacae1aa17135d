"""``cancel_other``: a fire of a job that finds the job's previous fire still running takes
the run over (overlap.lua marks the old run displaced, in the job's one hash), and the
replica running the old fire - this one or another - stops it.

Each engine keeps its running ``cancel_other`` fires in a :class:`Displacements` and its
``ruqi-cancel`` loop (every ``RUQI_POLL_INTERVAL``, 0.2 s by default) reads their jobs'
overlap hashes in one pipelined round trip. A run that is no longer its job's holder is
canceled: its :class:`Cancel` is set, which stops the command (commands.py: the script's
process group is terminated, the topic message deleted if still queued, the HTTP call
abandoned). So a cancel reaches any replica within one loop interval plus a round trip.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from .claims import Claims

log = logging.getLogger("butterfly.ruqi.cancel")


def holder_ts(holder: str) -> str:
    """The scheduled time in an overlap token ``<owner>|<ms>``, for a history note."""
    try:
        return f"{int(holder.rsplit('|', 1)[1]) / 1000:.3f}"
    except (ValueError, IndexError):
        return holder or "?"


class Cancel:
    """One running fire's cancel flag. A command registers what stops it (:meth:`on_cancel`)
    and unregisters it once the command ended (:meth:`off`): a hook never runs after
    that, so it never signals a process that is already reaped."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._hooks: list[Callable[[], None]] = []
        self._closed = False
        #: why the fire was canceled (its history note), "" while it was not
        self.reason = ""

    def is_set(self) -> bool:
        return self._event.is_set()

    def on_cancel(self, hook: Callable[[], None]) -> None:
        """Call ``hook`` when the fire is canceled (at once if it already was)."""
        with self._lock:
            self._hooks.append(hook)
            now = self._event.is_set()
        if now:
            self._call(hook)

    def off(self, hook: Callable[[], None]) -> None:
        """Forget ``hook``; once this returns it is not running and never will."""
        with self._lock:
            if hook in self._hooks:
                self._hooks.remove(hook)

    def close(self) -> bool:
        """The command ended: whether it was canceled before; later cancels do nothing
        (a fire that ended on its own is not recorded canceled)."""
        with self._lock:
            self._closed = True
            return self._event.is_set()

    def cancel(self, reason: str) -> bool:
        """Cancel the fire (once, and only while its command runs); False otherwise."""
        with self._lock:
            if self._event.is_set() or self._closed:
                return False
            self.reason = reason
            self._event.set()
            for hook in list(self._hooks):
                self._call(hook)
        return True

    @staticmethod
    def _call(hook: Callable[[], None]) -> None:
        try:
            hook()
        except Exception:
            log.exception("stopping a canceled fire failed")


class Displacements:
    """The ``cancel_other`` runs of one engine, checked against their jobs' overlap state."""

    def __init__(self, claims: Claims) -> None:
        self.claims = claims
        self._lock = threading.Lock()
        self._runs: dict[tuple[str, str], Cancel] = {}

    def add(self, job_id: str, token: str) -> Cancel:
        """Watch the run ``token`` of ``job_id`` from now until :meth:`remove`."""
        cancel = Cancel()
        with self._lock:
            self._runs[(job_id, token)] = cancel
        return cancel

    def remove(self, job_id: str, token: str) -> None:
        with self._lock:
            self._runs.pop((job_id, token), None)

    def __len__(self) -> int:
        return len(self._runs)

    def check(self) -> int:
        """Cancel the watched runs a newer fire displaced (the ``ruqi-cancel`` loop's
        work); returns how many. No watched run: no round trip."""
        with self._lock:
            runs = [(key, cancel) for key, cancel in self._runs.items()
                    if not cancel.is_set()]
        if not runs:
            return 0
        states = self.claims.overlap_displaced([key for key, _ in runs])
        done = 0
        for ((job_id, token), cancel), (holder, by) in zip(runs, states, strict=True):
            if by:
                reason = f"canceled by fire at {holder_ts(by)}"
            elif holder and holder != token:  # taken over (lease ended, or we seemed dead)
                reason = f"canceled by fire at {holder_ts(holder)} (took the run over)"
            else:  # still ours, or the state is gone (Redis lost it): keep running
                continue
            if cancel.cancel(reason):  # False: it ended meanwhile, nothing to stop
                done += 1
                log.info("fire %s of job %s: %s", token, job_id, reason)
        return done
