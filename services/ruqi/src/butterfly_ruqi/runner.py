"""Process hooks for ``butterfly serve ruqi``: create tables, start and stop the engine.

Each server process (every gunicorn worker) runs its own engine after fork; the claim
protocol makes N workers on M hosts behave like one scheduler. The config is the
service's declared :class:`~butterfly_ruqi.config.RuqiConfig`, read once by the runtime.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from butterfly_common import db
from butterfly_common.runtime import get_config, get_redis
from butterfly_common.settings import Settings

from . import safety
from .config import RuqiConfig
from .engine import Engine
from .models import MODELS, migrate
from .schedule import make_owner

log = logging.getLogger("butterfly.ruqi")

#: Engines running in this process (the status/wakeup handlers look here).
ENGINES: list[Engine] = []


def setup(settings: Settings) -> None:
    """Create ruqi's tables if they are missing (safe from many processes at once).

    The caller has built the runtime (``butterfly serve`` / ``python -m butterfly_ruqi``),
    which validated the RUQI_* variables.
    """
    safety.current()  # a bad RUQI_HTTP_ALLOW / RUQI_SCRIPT_ENV_PASS stops start-up
    db.create_tables(MODELS)
    migrate()


def start_engine(settings: Settings) -> Callable[[], None] | None:
    """Start this process's engine unless ``RUQI_ENGINE=0``; return its graceful stop."""
    config = get_config(RuqiConfig)
    if not config.engine:
        log.info("RUQI_ENGINE is off: this process serves the API only")
        return None
    engine = Engine(get_redis(), config, owner=make_owner(settings.port)).start()
    ENGINES.append(engine)

    def stop() -> None:
        engine.stop()
        if engine in ENGINES:
            ENGINES.remove(engine)

    return stop
