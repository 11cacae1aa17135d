"""Declared config: one field says variable, default, type, bounds and help; from_env checks."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from butterfly_common.config import Config, SettingInfo, setting
from butterfly_common.settings import SettingsError


@dataclass(frozen=True)
class DemoConfig(Config):
    interval: float = setting("DEMO_INTERVAL", 1.0, min=0.05, max=60, help="seconds")
    workers: int = setting("DEMO_WORKERS", 4, min=1, help="threads")
    enabled: bool = setting("DEMO_ENABLED", True, help="on/off")
    mode: str = setting("DEMO_MODE", "allow", choices=("allow", "forbid"))
    lang: str = setting("DEMO_LANG", "zh", choices=("zh", "en"), lower=True)
    folder: str | None = setting("DEMO_FOLDER", None)
    token: str = setting("DEMO_TOKEN", "", min_len=16, secret=True)
    password: str = setting("DEMO_PASSWORD", "", min_len=8, strip=False, secret=True)
    host: str = setting("DEMO_HOST", "127.0.0.1",
                        check=lambda v: None if " " not in v else "no blanks inside")
    secure: bool = setting("DEMO_SECURE", True,
                           env_default=lambda env: env.get("DEMO_ENV") != "development")
    low: float = setting("DEMO_LOW", 1.0, min=0)
    high: float = setting("DEMO_HIGH", 2.0, min=0)

    def validate(self) -> None:
        if self.high < self.low:
            raise SettingsError("DEMO_HIGH must be >= DEMO_LOW")


def test_defaults_are_the_field_defaults():
    cfg = DemoConfig.from_env({})
    assert cfg == DemoConfig()
    assert (cfg.interval, cfg.workers, cfg.enabled, cfg.mode, cfg.folder) == (
        1.0, 4, True, "allow", None)


def test_values_are_parsed_by_the_annotation():
    cfg = DemoConfig.from_env({"DEMO_INTERVAL": " 2.5 ", "DEMO_WORKERS": "7",
                               "DEMO_ENABLED": "off", "DEMO_MODE": "forbid",
                               "DEMO_LANG": "EN", "DEMO_FOLDER": " /srv/x ",
                               "DEMO_TOKEN": "t" * 16, "DEMO_PASSWORD": " pass word "})
    assert (cfg.interval, cfg.workers, cfg.enabled, cfg.mode, cfg.lang, cfg.folder) == (
        2.5, 7, False, "forbid", "en", "/srv/x")
    assert isinstance(cfg.workers, int)
    assert cfg.token == "t" * 16 and cfg.password == " pass word "


def test_blank_is_the_default():
    cfg = DemoConfig.from_env({"DEMO_INTERVAL": "  ", "DEMO_FOLDER": " ", "DEMO_MODE": ""})
    assert (cfg.interval, cfg.folder, cfg.mode) == (1.0, None, "allow")


@pytest.mark.parametrize(("name", "raw", "message"), [
    ("DEMO_INTERVAL", "fast", "DEMO_INTERVAL='fast': expected a number"),
    ("DEMO_INTERVAL", "0.01", "DEMO_INTERVAL='0.01': expected a number in 0.05..60"),
    ("DEMO_INTERVAL", "nan", "DEMO_INTERVAL='nan': expected a number in 0.05..60"),
    ("DEMO_WORKERS", "0", "DEMO_WORKERS='0': expected a number >= 1"),
    ("DEMO_ENABLED", "maybe", "DEMO_ENABLED='maybe': expected one of 1/0"),
    ("DEMO_MODE", "sometimes", "DEMO_MODE='sometimes': expected allow or forbid"),
    ("DEMO_LANG", "FR", "DEMO_LANG='fr': expected zh or en"),
    ("DEMO_TOKEN", "short", "DEMO_TOKEN: use at least 16 characters"),
    ("DEMO_PASSWORD", "1234567", "DEMO_PASSWORD: use at least 8 characters"),
    ("DEMO_HOST", "a b", "DEMO_HOST='a b': no blanks inside"),
])
def test_a_bad_value_names_the_variable(name, raw, message):
    with pytest.raises(SettingsError) as info:
        DemoConfig.from_env({name: raw})
    assert str(info.value).startswith(message)


def test_secret_is_never_in_the_message():
    with pytest.raises(SettingsError) as info:
        DemoConfig.from_env({"DEMO_TOKEN": "hunter2"})
    assert "hunter2" not in str(info.value)


def test_default_may_depend_on_the_environment():
    assert DemoConfig.from_env({"DEMO_ENV": "development"}).secure is False
    assert DemoConfig.from_env({}).secure is True
    assert DemoConfig.from_env({"DEMO_ENV": "development", "DEMO_SECURE": "1"}).secure is True


def test_validate_checks_across_fields():
    with pytest.raises(SettingsError, match="DEMO_HIGH must be >= DEMO_LOW"):
        DemoConfig.from_env({"DEMO_LOW": "5"})
    assert DemoConfig.from_env({"DEMO_LOW": "5", "DEMO_HIGH": "5"}).high == 5.0


def test_describe_gives_value_source_help_and_masks_secrets():
    rows = {row.env: row for row in DemoConfig.describe({"DEMO_WORKERS": "9",
                                                         "DEMO_TOKEN": "s" * 20})}
    assert list(rows)[:3] == ["DEMO_INTERVAL", "DEMO_WORKERS", "DEMO_ENABLED"]
    assert rows["DEMO_WORKERS"] == SettingInfo("DEMO_WORKERS", 9, "env", "threads", False)
    assert rows["DEMO_INTERVAL"].source == "default" and rows["DEMO_INTERVAL"].value == 1.0
    assert rows["DEMO_TOKEN"].secret and rows["DEMO_TOKEN"].shown() == "****"
    assert rows["DEMO_PASSWORD"].shown() == ""  # unset secret: nothing to hide
    assert rows["DEMO_FOLDER"].shown() == ""


def test_an_unsupported_annotation_is_refused():
    @dataclass(frozen=True)
    class Odd(Config):
        items: int | str = setting("ODD_ITEMS", None)

    with pytest.raises(TypeError, match="unsupported setting type"):
        Odd.from_env({})


def test_the_framework_settings_are_declared_the_same_way():
    from butterfly_common.settings import Settings, describe_settings, load_settings

    env = {"BUTTERFLY_THREADS": "16", "BUTTERFLY_ADMIN_TOKEN": "a" * 20,
           "BUTTERFLY_RUQI_URL": "http://ruqi:4100/",
           "BUTTERFLY_DB_URL": "mysql://root:dbpass@127.0.0.1:3306/test"}
    settings = Settings.from_env(env)
    assert settings == load_settings(env)
    assert settings.service_urls == {"ruqi": "http://ruqi:4100"} and settings.env == env
    assert "a" * 20 not in repr(settings)
    rows = {row.env: row for row in describe_settings(load_settings(env, default_port=4300))}
    assert rows["BUTTERFLY_THREADS"].value == 16 and rows["BUTTERFLY_THREADS"].source == "env"
    assert (rows["BUTTERFLY_PORT"].value, rows["BUTTERFLY_PORT"].source) == (4300, "default")
    assert rows["BUTTERFLY_ADMIN_TOKEN"].shown() == "****"
    assert rows["BUTTERFLY_DB_URL"].shown() == "mysql://root:****@127.0.0.1:3306/test"
    assert rows["BUTTERFLY_RUQI_URL"].shown() == "http://ruqi:4100"
    assert rows["BUTTERFLY_TRUSTED_PROXIES"].shown() == ""


def test_whole_number_settings_refuse_fractions():
    from butterfly_common.settings import load_settings

    with pytest.raises(SettingsError, match=r"BUTTERFLY_WORKERS='1\.5': expected a whole number"):
        load_settings({"BUTTERFLY_WORKERS": "1.5"})
    with pytest.raises(SettingsError, match=r"BUTTERFLY_LOG_BACKUPS='0': expected a number in "
                                            r"1\.\.1000"):
        load_settings({"BUTTERFLY_LOG_BACKUPS": "0"})
