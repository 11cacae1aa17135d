"""The validated WuxingConfig of this process (read once, by the framework, at start)."""

from __future__ import annotations

from butterfly_common import runtime

from .config import WuxingConfig


def get_config() -> WuxingConfig:
    """``runtime.get_config(WuxingConfig)``: the ``WUXING_*`` settings, validated."""
    return runtime.get_config(WuxingConfig)
