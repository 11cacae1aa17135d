"""``python -m butterfly_ruqi``: an engine-only replica (no HTTP), configured from the env.

Useful beside API-only replicas (``RUQI_ENGINE=0``) and for process-level tests: it runs
until SIGTERM/SIGINT, then stops gracefully (finishes running fires, stores their history,
hands unstarted claims to peers). It builds the same ServiceRuntime as ``butterfly serve``
and runs the same background work (with ``BUTTERFLY_CONSUME=1``, the queue consumer too).
"""

from __future__ import annotations

import logging
import signal
import threading

from butterfly_common import runtime
from butterfly_common.serve import prepare, start_background, stop_background
from butterfly_common.settings import load_settings

from . import service


def main() -> None:
    settings = load_settings(default_port=service.port)
    logging.basicConfig(level=settings.log_level,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    prepare(service, settings)
    runtime.build_runtime(service, settings)
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    stops = start_background(service, settings)
    done.wait()
    stop_background(stops)


if __name__ == "__main__":
    main()
