"""The validated WuxingConfig of this process, read once from the settings."""

from __future__ import annotations

import threading

from butterfly_common import runtime

from .config import WuxingConfig

_lock = threading.Lock()
_config: tuple[object, WuxingConfig] | None = None


def get_config() -> WuxingConfig:
    """WuxingConfig from ``Settings.extra`` (rebuilt only if the settings were replaced)."""
    global _config
    settings = runtime.get_settings()
    current = _config
    if current is None or current[0] is not settings:
        with _lock:
            current = (settings, WuxingConfig.from_env(settings.extra))
            _config = current
    return current[1]
