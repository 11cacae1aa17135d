"""Fixtures for the framework tests: the sample service's app on real settings (on the
plugin's ``redis_server``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from butterfly_common.app import ServiceApp, create_app
from butterfly_common.consumer import Consumer
from butterfly_common.discovery import discover
from butterfly_common.gateway import Gateway
from butterfly_common.logs import configure_logging
from butterfly_common.middleware import Chain
from butterfly_common.mq import Broker
from butterfly_common.protocol import ProtocolSettings
from butterfly_common.redis_client import make_redis
from butterfly_common.runtime import configure
from butterfly_common.service import Service
from butterfly_common.settings import load_settings

SAMPLE = Service(name="sample", port=18000, handlers="sample_handlers")


@pytest.fixture
def make_app(tmp_path: Path, redis_server) -> Callable[..., ServiceApp]:
    """Build the sample service's app with extra ``BUTTERFLY_*`` settings."""

    def build(**env: str) -> ServiceApp:
        base = {"BUTTERFLY_LOG_DIR": str(tmp_path / "log"),
                "BUTTERFLY_DATA_DIR": str(tmp_path / "data"),
                "BUTTERFLY_REDIS_URL": redis_server.url}
        app = create_app(SAMPLE, load_settings({**base, **env}))
        return app

    return build


@pytest.fixture
def client(make_app):
    return make_app().test_client()


@pytest.fixture
def sample_consumers(redis_url: str, tmp_path: Path):
    """``(broker, start, log_dir)`` on ``redis_url`` (redis, then twemproxy): ``start(**options)``
    starts a consumer of the sample service's topics (``chain=``: its middleware, default
    the framework's own); every one started is stopped at the end."""
    settings = load_settings({"BUTTERFLY_REDIS_URL": redis_url,
                              "BUTTERFLY_LOG_DIR": str(tmp_path / "log"),
                              "BUTTERFLY_DATA_DIR": str(tmp_path / "data")})
    configure(settings)
    configure_logging(settings, "sample")
    routes = discover(SAMPLE.handlers)
    broker = Broker(make_redis(redis_url), lease=1.0, min_backoff=0.05, max_backoff=0.2)
    consumers: list[Consumer] = []

    def start(chain: Chain | None = None, **options) -> Consumer:
        options.setdefault("threads", 4)
        options.setdefault("max_idle", 0.05)
        gateway = Gateway(ProtocolSettings(), settings.download_root, chain)
        consumer = Consumer("sample", routes, gateway, broker, **options).start()
        consumers.append(consumer)
        return consumer

    yield broker, start, tmp_path / "log" / "sample"
    for consumer in consumers:
        consumer.stop()
