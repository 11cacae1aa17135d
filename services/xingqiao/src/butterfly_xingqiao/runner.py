"""Process hooks for ``butterfly serve xingqiao``: tables and plugins at start, the sweep
loop in every server process (only the lease holder sweeps)."""

from __future__ import annotations

from collections.abc import Callable

from butterfly_common import db
from butterfly_common.runtime import get_config, get_redis
from butterfly_common.settings import Settings

from . import flowtypes, migrations
from .config import XingqiaoConfig
from .models import MODELS
from .sweep import Sweeper


def setup(settings: Settings) -> None:
    """Add the columns a newer release declares, create the tables and indexes, load the plugins
    (the framework validated XINGQIAO_*)."""
    migrations.migrate()  # first: an older table gets the columns new indexes name
    db.create_tables(MODELS)
    flowtypes.reload_local()


def start_sweeper(settings: Settings) -> Callable[[], None]:
    """This process's sweep loop; returns its graceful stop."""
    return Sweeper(get_redis(), get_config(XingqiaoConfig)).start().stop
