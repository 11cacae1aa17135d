"""``python -m butterfly_ruqi``: an engine-only replica (no HTTP), configured from the env.

Useful beside API-only replicas (``RUQI_ENGINE=0``) and for process-level tests: it runs
until SIGTERM/SIGINT, then stops gracefully (finishes running fires, stores their history,
hands unstarted claims to peers).
"""

from __future__ import annotations

import logging
import signal
import threading

from butterfly_common import runtime
from butterfly_common.settings import load_settings

from . import service


def main() -> None:
    settings = load_settings(default_port=service.port)
    logging.basicConfig(level=settings.log_level,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    runtime.configure(settings)
    assert service.setup is not None
    service.setup(settings)
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    stops = [stop for starter in service.starters if (stop := starter(settings))]
    done.wait()
    for stop in stops:
        stop()


if __name__ == "__main__":
    main()
