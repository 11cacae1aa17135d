"""Service-declared config: read and validated once with the settings, one per process."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pytest

from butterfly_common import mq, runtime
from butterfly_common.app import create_app
from butterfly_common.service import Service
from butterfly_common.settings import SettingsError, env_number, load_settings

READS: list[int] = []


@dataclass(frozen=True)
class DemoConfig:
    limit: int = 10

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> DemoConfig:
        READS.append(1)
        return cls(limit=int(env_number(env, "DEMO_LIMIT", 10, 1, 100)))


DEMO = Service(name="democfg", port=18002, handlers="sample_handlers", env_prefix="DEMO",
               config=DemoConfig, description="a service with its own config")


def settings_for(tmp_path, **env):
    return load_settings({"BUTTERFLY_LOG_DIR": str(tmp_path / "log"),
                          "BUTTERFLY_DATA_DIR": str(tmp_path / "data"),
                          "OTHER_LIMIT": "5", **env})


def test_config_is_read_once_and_shared(tmp_path):
    READS.clear()
    settings = settings_for(tmp_path, DEMO_LIMIT="42")
    app = create_app(DEMO, settings)
    spec = app.test_client().get("/openapi.json").get_json()
    assert spec["info"]["description"] == "a service with its own config"
    rt = runtime.current_runtime()
    assert rt is not None and rt.config == DemoConfig(42)
    for _ in range(3):
        assert runtime.get_config(DemoConfig) is rt.config
        assert runtime.service_config() is rt.config
    assert len(READS) == 1
    # the process's broker (mq.broker(), not carried by the runtime: runtime sits below mq)
    assert mq.broker().client is rt.redis is runtime.get_redis() and rt.database is not None


def test_bad_value_stops_the_start_naming_the_variable(tmp_path):
    with pytest.raises(SettingsError, match="DEMO_LIMIT"):
        create_app(DEMO, settings_for(tmp_path, DEMO_LIMIT="1000"))


def test_new_settings_read_the_config_again(tmp_path):
    create_app(DEMO, settings_for(tmp_path, DEMO_LIMIT="7"))
    assert runtime.get_config(DemoConfig).limit == 7
    create_app(DEMO, settings_for(tmp_path))
    assert runtime.get_config(DemoConfig).limit == 10


def test_env_prefix_defaults_to_the_name_and_config_needs_from_env():
    assert Service(name="wuxing", port=1, handlers="x").env_prefix == "WUXING"
    with pytest.raises(TypeError, match="from_env"):
        Service(name="x", port=1, handlers="x", config=dict)


def test_any_from_env_class_is_read_once_per_settings(tmp_path):
    @dataclass(frozen=True)
    class Part:  # part of a service's settings kept in its own module
        url: str

        @classmethod
        def from_env(cls, env):
            READS.append(1)
            return cls(env.get("BUTTERFLY_RUQI_URL", ""))

    READS.clear()
    runtime.configure(settings_for(tmp_path, BUTTERFLY_RUQI_URL="http://r:1"))
    assert runtime.get_config(Part) is runtime.get_config(Part)
    assert runtime.get_config(Part).url == "http://r:1" and len(READS) == 1
    runtime.configure(settings_for(tmp_path))
    assert runtime.get_config(Part).url == "" and len(READS) == 2
    with pytest.raises(TypeError, match="from_env"):
        runtime.get_config(dict)
