"""Process hooks for ``butterfly serve canghai``: check settings, create tables, first admin."""

from __future__ import annotations

import logging

from butterfly_common import db
from butterfly_common.runtime import get_config
from butterfly_common.settings import Settings

from . import users
from .config import CanghaiConfig, fleet_secret
from .models import MODELS

log = logging.getLogger("butterfly.canghai")


def setup(settings: Settings) -> None:
    """Refuse to start without ``BUTTERFLY_SECRET_KEY`` (outside development), create the
    tables, and create the first admin from ``CANGHAI_ADMIN_PASSWORD`` when none exists."""
    fleet_secret(settings)  # fail fast: SettingsError names the variable
    cfg = get_config(CanghaiConfig)
    db.create_tables(MODELS)
    if users.ensure_first_admin(cfg.admin_user, cfg.admin_password):
        log.info("created the first admin %r from CANGHAI_ADMIN_PASSWORD", cfg.admin_user)
