"""The engine's worker threads: calls run in the order they were handed over, on up to
``workers`` threads, with no Future per call.

``concurrent.futures.ThreadPoolExecutor`` builds a Future (a Condition and its RLock), a
work item and a semaphore check for every call, and sets the Future's result after it -
bookkeeping the engine never reads (its tasks record their own outcome and catch their own
errors): about a twentieth of a fire's CPU at 1,000 fires a second. A claim round hands
its fires over with :meth:`RunPool.submit_many`: one lock and one notify for the round.
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any

log = logging.getLogger("butterfly.ruqi.pool")

Call = tuple[Callable[..., Any], tuple[Any, ...]]


class RunPool:
    """A fixed-size pool of threads started as needed; the subset of
    ``ThreadPoolExecutor`` the engine uses (``submit`` returns nothing)."""

    def __init__(self, workers: int, name: str) -> None:
        self._max = workers
        self._name = name
        self._queue: collections.deque[Call] = collections.deque()
        self._cond = threading.Condition(threading.Lock())
        self._threads: list[threading.Thread] = []
        #: workers waiting for a call and not yet notified
        self._idle = 0
        self._closed = False

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on a worker; RuntimeError once shut down."""
        self.submit_many([(fn, args)])

    def submit_many(self, calls: Iterable[Call]) -> None:
        """Hand several calls over at once (one lock, one notify); RuntimeError once shut
        down (then none of them is queued)."""
        with self._cond:
            if self._closed:
                raise RuntimeError("cannot schedule new calls after shutdown")
            before = len(self._queue)
            self._queue.extend(calls)
            added = len(self._queue) - before
            wake = min(added, self._idle)
            if wake:
                self._idle -= wake
                self._cond.notify(wake)
            # calls no idle worker takes get a new thread, up to the limit (a busy worker
            # takes the rest when it is done)
            for _ in range(min(added - wake, self._max - len(self._threads))):
                thread = threading.Thread(target=self._work, daemon=True,
                                          name=f"{self._name}_{len(self._threads)}")
                self._threads.append(thread)
                thread.start()

    def _work(self) -> None:
        queue, cond = self._queue, self._cond
        while True:
            with cond:
                while not queue:
                    if self._closed:
                        return
                    self._idle += 1
                    cond.wait()
                fn, args = queue.popleft()
            try:
                fn(*args)
            except BaseException:
                log.exception("%s: a call failed", self._name)
            del fn, args

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        """No new calls; ``cancel_futures``: drop the queued ones; ``wait``: until the
        running ones (and, without ``cancel_futures``, the queued ones) have ended."""
        with self._cond:
            self._closed = True
            if cancel_futures:
                self._queue.clear()
            self._idle = 0
            self._cond.notify_all()
            threads = list(self._threads)
        if wait:
            for thread in threads:
                if thread is not threading.current_thread():
                    thread.join()
