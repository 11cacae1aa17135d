"""Start-up: validate the config, migrate the schema; then per process, prune history."""

from __future__ import annotations

from collections.abc import Callable

from butterfly_common.runtime import get_config
from butterfly_common.settings import Settings

from . import history, migrations
from .config import WuxingConfig


def setup(settings: Settings) -> None:
    """Once, before the workers fork: a bad WUXING_* value stops start-up here."""
    get_config(WuxingConfig)
    migrations.migrate()


def start_pruner(settings: Settings) -> Callable[[], None] | None:
    """Per worker: prune history older than WUXING_HISTORY_DAYS every so often."""
    config = get_config(WuxingConfig)
    if config.history_days <= 0:
        return None
    return history.start_pruner(config.history_days, config.history_prune_interval)
