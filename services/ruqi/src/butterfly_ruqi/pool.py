"""The engine's worker threads: calls run in the order they were handed over, on up to
``workers`` threads, with no Future per call.

``concurrent.futures.ThreadPoolExecutor`` builds a Future (a Condition and its RLock), a
work item and a semaphore check for every call, and sets the Future's result after it -
bookkeeping the engine never reads (its tasks record their own outcome and catch their own
errors): about a twentieth of a fire's CPU at 1,000 fires a second. Here a call is a tuple
on a ``queue.SimpleQueue`` (C: a put wakes at most one waiting worker, which takes the
call without another lock); a claim round's fires go in with one :meth:`RunPool.submit_many`.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterable
from typing import Any

log = logging.getLogger("butterfly.ruqi.pool")

Call = tuple[Callable[..., Any], tuple[Any, ...]]


class RunPool:
    """A fixed-size pool of threads started with the first call; the subset of
    ``ThreadPoolExecutor`` the engine uses (``submit`` returns nothing)."""

    def __init__(self, workers: int, name: str) -> None:
        self._max = workers
        self._name = name
        self._queue: queue.SimpleQueue[Call | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._closed = False

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on a worker; RuntimeError once shut down."""
        self.submit_many([(fn, args)])

    def submit_many(self, calls: Iterable[Call]) -> None:
        """Hand several calls over at once; RuntimeError once shut down (then none of
        them is queued)."""
        with self._lock:
            if self._closed:
                raise RuntimeError("cannot schedule new calls after shutdown")
            if not self._threads:
                # all at the first call: an idle worker costs nothing (it waits in
                # the queue's get, and a put wakes one), and no count of idle ones is kept
                for i in range(self._max):
                    thread = threading.Thread(target=self._work, daemon=True,
                                              name=f"{self._name}_{i}")
                    self._threads.append(thread)
                    thread.start()
            put = self._queue.put
            for call in calls:
                put(call)

    def _work(self) -> None:
        get = self._queue.get
        while True:
            call = get()
            if call is None:  # shutdown
                return
            fn, args = call
            try:
                fn(*args)
            except BaseException:
                log.exception("%s: a call failed", self._name)
            del call, fn, args

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        """No new calls; ``cancel_futures``: drop the queued ones; ``wait``: until the
        running ones (and, without ``cancel_futures``, the queued ones) have ended."""
        with self._lock:
            self._closed = True
            if cancel_futures:
                while True:
                    try:
                        self._queue.get_nowait()
                    except queue.Empty:
                        break
            threads = list(self._threads)
            for _ in threads:  # one end mark each, behind whatever is still queued
                self._queue.put(None)
        if wait:
            for thread in threads:
                if thread is not threading.current_thread():
                    thread.join()
