"""CanghaiConfig declared once: defaults, the development default and the refusals."""

from __future__ import annotations

import pytest

from butterfly_canghai.config import CanghaiConfig
from butterfly_common.settings import SettingsError


def test_defaults_are_unchanged():
    cfg = CanghaiConfig.from_env({})
    assert (cfg.admin_user, cfg.admin_password, cfg.cookie_secure, cfg.session_hours,
            cfg.lockout_failures, cfg.lockout_ip_failures, cfg.lockout_minutes,
            cfg.audit_days, cfg.audit_failures_per_minute, cfg.series_hours,
            cfg.sample_seconds, cfg.fleet_file, cfg.fleet_host, cfg.probe_timeout,
            cfg.default_lang, cfg.log_dirs) == (
        "admin", "", True, 8.0, 5, 20, 15.0, 90.0, 20, 24.0, 15.0, "", "127.0.0.1", 1.5,
        "zh", "")


def test_cookies_are_not_secure_by_default_in_development_only():
    assert CanghaiConfig.from_env({"BUTTERFLY_ENV": "development"}).cookie_secure is False
    assert CanghaiConfig.from_env({"BUTTERFLY_ENV": "dev",
                                   "CANGHAI_COOKIE_SECURE": "1"}).cookie_secure is True


@pytest.mark.parametrize(("name", "raw", "message"), [
    ("CANGHAI_DEFAULT_LANG", "FR", "CANGHAI_DEFAULT_LANG='fr': expected zh or en"),
    ("CANGHAI_ADMIN_USER", "bad name", "CANGHAI_ADMIN_USER='bad name': 1..64 letters"),
    ("CANGHAI_ADMIN_PASSWORD", "short", "CANGHAI_ADMIN_PASSWORD: use at least 8 characters"),
    ("CANGHAI_LOCKOUT_FAILURES", "1001", "CANGHAI_LOCKOUT_FAILURES='1001': expected a number"),
])
def test_a_bad_value_names_the_variable(name, raw, message):
    with pytest.raises(SettingsError) as info:
        CanghaiConfig.from_env({name: raw})
    assert str(info.value).startswith(message)


def test_the_admin_password_is_secret_and_never_in_repr():
    cfg = CanghaiConfig.from_env({"CANGHAI_ADMIN_PASSWORD": "correct horse"})
    assert cfg.admin_password == "correct horse" and "correct horse" not in repr(cfg)
    rows = {row.env: row for row in CanghaiConfig.describe({"CANGHAI_ADMIN_PASSWORD": "x" * 9})}
    password = rows["CANGHAI_ADMIN_PASSWORD"]
    assert password.secret and password.shown() == "****"
