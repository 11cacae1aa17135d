"""A tiny service whose handlers fail, sleep and count their runs: the tasks of the
xingqiao tests (``butterfly serve xq_testapp:service`` with this folder on PYTHONPATH).

A handler still sleeping when the process is asked to stop (SIGTERM: a test's teardown)
gives up with an error instead of sleeping on: the consumer's graceful stop waits up to
25 s for running handlers, longer than the 10 s a test's ``stop()`` gives before SIGKILL,
so a fleet left with a canceled task's long sleep cost every such teardown 10 s.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from typing import Any

from butterfly_common.service import Service

#: Set when the worker is asked to stop; the sleeping handlers watch it.
STOPPING = threading.Event()


def _watch_sigterm(settings: Any) -> Callable[[], None] | None:
    """A starter (post_worker_init, the worker's main thread): SIGTERM sets STOPPING, then
    goes on to the handler gunicorn installed."""
    previous = signal.getsignal(signal.SIGTERM)

    def on_term(signum: int, frame: Any) -> None:
        STOPPING.set()
        if callable(previous):
            previous(signum, frame)

    signal.signal(signal.SIGTERM, on_term)
    return None


service = Service(name="xqtest", port=4799, handlers="xq_testapp.handlers",
                  starters=[_watch_sigterm])
