"""XingqiaoConfig declared once: the defaults and refusals of every XINGQIAO_* variable."""

from __future__ import annotations

import pytest

from butterfly_common.settings import SettingsError
from butterfly_xingqiao.config import XingqiaoConfig


def test_defaults_are_unchanged():
    cfg = XingqiaoConfig.from_env({})
    assert (cfg.plugin_dir, cfg.sweep_interval, cfg.sweep, cfg.notice_grace, cfg.job_timeout,
            cfg.task_timeout, cfg.retry_delay, cfg.max_retry_delay, cfg.result_ttl,
            cfg.graph_timeout, cfg.drop_notices) == (
        None, 2.0, True, 1.0, 3600, 600.0, 1.0, 3600.0, 86400.0, 10.0, 0.0)


@pytest.mark.parametrize(("env", "message"), [
    ({"XINGQIAO_RESULT_TTL": "59"}, "XINGQIAO_RESULT_TTL='59': expected a number >= 60"),
    ({"XINGQIAO_DROP_NOTICES": "2"}, "XINGQIAO_DROP_NOTICES='2': expected a number in 0..1"),
    ({"XINGQIAO_SWEEP": "perhaps"}, "XINGQIAO_SWEEP='perhaps'"),
    ({"XINGQIAO_RETRY_DELAY": "10", "XINGQIAO_MAX_RETRY_DELAY": "5"},
     "XINGQIAO_MAX_RETRY_DELAY must be >= XINGQIAO_RETRY_DELAY"),
])
def test_a_bad_value_names_the_variable(env, message):
    with pytest.raises(SettingsError) as info:
        XingqiaoConfig.from_env(env)
    assert str(info.value).startswith(message)


def test_whole_number_setting_is_an_int():
    cfg = XingqiaoConfig.from_env({"XINGQIAO_JOB_TIMEOUT": "120", "XINGQIAO_PLUGIN_DIR": " p "})
    assert cfg.job_timeout == 120 and isinstance(cfg.job_timeout, int)
    assert cfg.plugin_dir == "p"
