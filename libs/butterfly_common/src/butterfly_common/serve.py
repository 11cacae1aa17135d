"""``butterfly serve <svc>``: the service under gunicorn, with background work per worker.

The app is built in each worker after fork (no preload), so Redis and DB connections are
never shared across processes. Background work (queue consumers, the scheduler engine,
the instance's announcement in Redis: ``announce.py``) starts in ``post_worker_init`` and
stops in ``worker_exit``, which gunicorn runs on a graceful SIGTERM: stop taking work,
finish or hand back what is in flight, exit.
"""

from __future__ import annotations

import gc
import logging
import os
import tempfile
from collections.abc import Callable
from typing import Any

from gunicorn.app.base import BaseApplication

from . import middleware
from .announce import announce_starter
from .fastpath import one_write
from .service import Service, Starter
from .settings import Settings

log = logging.getLogger(__name__)


def prepare_metrics_dir() -> None:
    """Give all workers one Prometheus multiprocess dir (before prometheus_client loads)."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="butterfly-metrics-")


def start_background(service: Service, settings: Settings) -> list[Callable[[], None]]:
    """Run the service's starters (and the queue consumer when consuming); return stoppers."""
    stoppers = []
    for starter in background_starters(service, settings):
        stop = starter(settings)
        if stop is not None:
            stoppers.append(stop)
    return stoppers


def background_starters(service: Service, settings: Settings) -> list[Starter]:
    """The service's own starters, plus the queue consumer with ``BUTTERFLY_CONSUME=1``."""
    starters = list(service.starters)
    if settings.consume:
        from .consumer import consumer_starter

        starters.append(consumer_starter(service))
    return starters


def stop_background(stoppers: list[Callable[[], None]]) -> None:
    """Run the stoppers, newest first, then stop any :class:`~.periodic.Periodic` loop
    they left running (one started outside a starter), so leases are released."""
    from . import periodic

    for stop in reversed(stoppers):
        try:
            stop()
        except Exception:
            log.exception("stopping background work failed")
    periodic.stop_all()


class ButterflyServer(BaseApplication):
    """A gunicorn application for one service, configured from Settings (no config file)."""

    def __init__(self, service: Service, settings: Settings, **overrides: Any) -> None:
        self.service = service
        self.settings = settings
        self.overrides = overrides
        self._stoppers: list[Callable[[], None]] = []
        super().__init__()

    def load_config(self) -> None:
        s = self.settings
        options = {
            "bind": f"{s.host}:{s.port}",
            "workers": s.workers,
            "worker_class": "gthread",
            "threads": s.threads,
            "timeout": s.timeout,
            "graceful_timeout": 30,
            "keepalive": 5,
            # gunicorn's largest bounded request line: long query strings (lists, JSON
            # values) reach the app and get its 400s; beyond this gunicorn answers 414
            "limit_request_line": 8190,
            "proc_name": f"butterfly-{self.service.name}",
            "post_worker_init": self._post_worker_init,
            "worker_exit": self._worker_exit,
            "child_exit": self._child_exit,
            **self.overrides,
        }
        if "control_socket_disable" in self.cfg.settings:
            # one control socket per user would be shared by every service on the host
            options.setdefault("control_socket_disable", True)
        for key, value in options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        from .app import create_app

        return create_app(self.service, self.settings)

    def _post_worker_init(self, worker: Any) -> None:
        if self.settings.fastpath_one_write:
            one_write.install()  # an answer's head and body in one sendall
        for mw in middleware.active().on_fork:  # the chain create_app installed
            mw.on_fork(self.service, self.settings)
        self._stoppers = start_background(self.service, self.settings)
        # an HTTP server (not an engine-only process) tells the fleet where it answers
        stop_announcing = announce_starter(self.service)(self.settings)
        if stop_announcing is not None:
            self._stoppers.append(stop_announcing)
        # Everything loaded so far (the framework, its libraries, the service) lives as
        # long as the worker: out of the cyclic collector's sight, a collection no longer
        # walks tens of thousands of module-level objects in the middle of a request.
        gc.freeze()

    def _worker_exit(self, server: Any, worker: Any) -> None:
        from .logfiles import flush_all

        stop_background(self._stoppers)
        middleware.active().notify("on_shutdown", self.service)
        flush_all()  # the access lines still batched (logging's atexit hook does it too)

    @staticmethod
    def _child_exit(server: Any, worker: Any) -> None:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]


def prepare(service: Service, settings: Settings) -> None:
    """Once per deployment start, before any worker: install the settings, validate the
    service's config (SettingsError naming the variable) and run its ``setup``."""
    from . import db, runtime

    runtime.configure(settings)
    runtime.load_config(service)
    if service.setup is not None:
        service.setup(settings)
        if db.database.obj is not None and not db.database.is_closed():
            db.database.close()
    for mw in middleware.chain_for(service, settings).on_boot:
        mw.on_boot(service, settings)


def serve(service: Service, settings: Settings, **overrides: Any) -> None:
    """Run ``service`` until SIGTERM/SIGINT."""
    prepare_metrics_dir()
    prepare(service, settings)
    ButterflyServer(service, settings, **overrides).run()
