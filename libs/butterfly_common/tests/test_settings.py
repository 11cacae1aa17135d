"""Settings: defaults, parsing, and clear errors for bad values."""

from __future__ import annotations

import subprocess
import sys

import pytest

from butterfly_common.settings import SettingsError, load_settings


def test_defaults():
    s = load_settings({})
    assert s.redis_url == "redis://127.0.0.1:6379/0"
    assert s.database_url.startswith("sqlite:///") and s.database_url.endswith("butterfly.db")
    assert (s.port, s.consume, s.admin_token, s.legacy_status) == (8585, False, "", False)
    assert load_settings({}, default_port=4300).port == 4300


def test_values_parse():
    s = load_settings({"BUTTERFLY_PORT": "9000", "BUTTERFLY_CONSUME": "yes",
                       "BUTTERFLY_TRUSTED_PROXIES": "10.0.0.0/8, 127.0.0.1",
                       "BUTTERFLY_DB_URL": "mysql://root@127.0.0.1:3306/test",
                       "BUTTERFLY_REDIS_URL": "redis+cluster://127.0.0.1:7000/0",
                       "RUQI_SCRIPT_DIR": "/srv/scripts", "HOME": "/root"})
    assert (s.port, s.consume, len(s.trusted_proxies)) == (9000, True, 2)
    assert s.service_env("RUQI") == {"RUQI_SCRIPT_DIR": "/srv/scripts"}


@pytest.mark.parametrize(("name", "value", "message"), [
    ("BUTTERFLY_PORT", "eighty", "BUTTERFLY_PORT='eighty': expected a whole number"),
    ("BUTTERFLY_PORT", "70000", "BUTTERFLY_PORT='70000': expected a number in 1..65535"),
    ("BUTTERFLY_CONSUME", "sometimes", "BUTTERFLY_CONSUME='sometimes'"),
    ("BUTTERFLY_REDIS_URL", "localhost:6379", "BUTTERFLY_REDIS_URL: expected a URL"),
    ("BUTTERFLY_DB_URL", "oracle://x", "BUTTERFLY_DB_URL: expected a URL"),
    ("BUTTERFLY_TRUSTED_PROXIES", "10.0.0.0/8,nope", "'nope' is not an IP"),
    ("BUTTERFLY_ADMIN_TOKEN", "short", "at least 16 characters"),
    ("BUTTERFLY_STAT_ADAPTOR", "{bad", "not valid JSON"),
    ("BUTTERFLY_STAT_ADAPTOR", '{"status_name": "s"}', "expected a JSON object with keys"),
    ("BUTTERFLY_LOG_LEVEL", "LOUD", "expected DEBUG, INFO"),
])
def test_bad_values_name_the_variable(name, value, message):
    with pytest.raises(SettingsError) as info:
        load_settings({name: value})
    assert message in str(info.value)


def test_cli_reports_bad_setting_without_traceback():
    result = subprocess.run([sys.executable, "-m", "butterfly_common.cli", "serve", "core"],
                            env={"BUTTERFLY_PORT": "eighty", "PATH": ""}, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2
    assert "configuration error: BUTTERFLY_PORT='eighty'" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_reports_unknown_service():
    result = subprocess.run([sys.executable, "-m", "butterfly_common.cli", "serve", "nosuch"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "unknown service 'nosuch'" in result.stderr


def test_service_variables_share_the_parsers():
    from butterfly_common.settings import env_flag, env_number

    assert env_number({}, "X_N", 5) == 5
    assert env_number({"X_N": " 2.5 "}, "X_N", 5) == 2.5
    with pytest.raises(SettingsError, match="X_N='nan': expected a number >= 0"):
        env_number({"X_N": "nan"}, "X_N", 1)
    with pytest.raises(SettingsError, match=r"expected a number in 1\.\.10"):
        env_number({"X_N": "11"}, "X_N", 5, 1, 10)
    assert env_flag({"X_F": "yes"}, "X_F", False) is True
    assert env_flag({"X_F": ""}, "X_F", True) is True
    with pytest.raises(SettingsError, match="X_F='maybe'"):
        env_flag({"X_F": "maybe"}, "X_F", False)


def test_cli_reads_a_dotenv_file_but_the_environment_wins(tmp_path):
    (tmp_path / ".env").write_text("BUTTERFLY_PORT=dotenv-port\nBUTTERFLY_CONSUME=maybe\n")
    result = subprocess.run([sys.executable, "-m", "butterfly_common.cli", "serve", "core"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=60,
                            env={"PATH": "", "BUTTERFLY_PORT": "8599"})
    assert result.returncode == 2
    assert "BUTTERFLY_CONSUME='maybe'" in result.stderr  # read from .env
    assert "dotenv-port" not in result.stderr  # BUTTERFLY_PORT came from the environment
