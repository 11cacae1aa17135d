"""RuqiConfig declared once: the defaults and refusals every RUQI_* variable always had."""

from __future__ import annotations

import pytest

from butterfly_common.settings import SettingsError
from butterfly_ruqi.config import RuqiConfig


def test_defaults_are_unchanged():
    cfg = RuqiConfig.from_env({"RUQI_TIMEZONE": "Asia/Shanghai"})
    assert (cfg.script_dir, cfg.timezone, cfg.misfire_grace_time, cfg.coalesce, cfg.overlap,
            cfg.timeout, cfg.cmd_max_len, cfg.engine, cfg.workers, cfg.poll_interval,
            cfg.claim_interval, cfg.node_ttl, cfg.coalesce_after, cfg.history_max_age_days,
            cfg.history_max_per_job, cfg.history_prune_interval) == (
        None, "Asia/Shanghai", 30, False, "allow", 60.0, 4096, True, 32, 0.2, 0.02, 3.0,
        5.0, 30.0, 1000, 600.0)
    assert RuqiConfig.from_env({}).timezone  # the machine's zone when unset


def test_values_are_read():
    cfg = RuqiConfig.from_env({"RUQI_WORKERS": "4", "RUQI_OVERLAP": "forbid",
                               "RUQI_ENGINE": "0", "RUQI_SCRIPT_DIR": "/srv/scripts"})
    assert (cfg.workers, cfg.overlap, cfg.engine, cfg.script_dir) == (
        4, "forbid", False, "/srv/scripts")


@pytest.mark.parametrize(("name", "raw", "message"), [
    ("RUQI_OVERLAP", "sometimes",
     "RUQI_OVERLAP='sometimes': expected allow, skip, buffer_one, buffer_all, cancel_other "
     "or forbid"),
    ("RUQI_WORKERS", "0", "RUQI_WORKERS='0': expected a number >= 1"),
    ("RUQI_POLL_INTERVAL", "soon", "RUQI_POLL_INTERVAL='soon': expected a number"),
    ("RUQI_COALESCE", "maybe", "RUQI_COALESCE='maybe': expected one of"),
    ("RUQI_NODE_TTL", "0.1", "RUQI_NODE_TTL='0.1': expected a number >= 0.5"),
])
def test_a_bad_value_names_the_variable(name, raw, message):
    with pytest.raises(SettingsError) as info:
        RuqiConfig.from_env({name: raw})
    assert str(info.value).startswith(message)
