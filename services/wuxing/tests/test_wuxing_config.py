"""WuxingConfig declared once: the defaults and refusals of every WUXING_* variable."""

from __future__ import annotations

import pytest

from butterfly_common.settings import SettingsError
from butterfly_wuxing.config import WuxingConfig


def test_defaults_are_unchanged():
    cfg = WuxingConfig.from_env({})
    assert (cfg.history_days, cfg.history_prune_interval, cfg.cache, cfg.cache_ttl,
            cfg.cache_lease, cfg.cache_timeout, cfg.read_token, cfg.watch_max_timeout,
            cfg.watch_max_changes, cfg.watch_poll_max) == (
        90.0, 3600.0, True, 3600.0, 0.01, 0.2, "", 50.0, 1000, 0.005)


@pytest.mark.parametrize(("name", "raw", "message"), [
    ("WUXING_READ_TOKEN", "short", "WUXING_READ_TOKEN: use at least 16 characters"),
    ("WUXING_CACHE_LEASE", "2", "WUXING_CACHE_LEASE='2': expected a number in 0..1"),
    ("WUXING_CACHE", "sometimes", "WUXING_CACHE='sometimes'"),
])
def test_a_bad_value_names_the_variable(name, raw, message):
    with pytest.raises(SettingsError) as info:
        WuxingConfig.from_env({name: raw})
    assert str(info.value).startswith(message)


def test_the_read_token_is_read_and_not_in_repr():
    cfg = WuxingConfig.from_env({"WUXING_READ_TOKEN": " " + "k" * 20 + " "})
    assert cfg.read_token == "k" * 20 and "k" * 20 not in repr(cfg)
