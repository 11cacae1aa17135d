"""Fixtures for the framework tests: the sample service's app on real settings (on the
plugin's ``redis_server``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask

from butterfly_common.app import create_app
from butterfly_common.service import Service
from butterfly_common.settings import load_settings

SAMPLE = Service(name="sample", port=18000, handlers="sample_handlers")


@pytest.fixture
def make_app(tmp_path: Path, redis_server) -> Callable[..., Flask]:
    """Build the sample service's app with extra ``BUTTERFLY_*`` settings."""

    def build(**env: str) -> Flask:
        base = {"BUTTERFLY_LOG_DIR": str(tmp_path / "log"),
                "BUTTERFLY_DATA_DIR": str(tmp_path / "data"),
                "BUTTERFLY_REDIS_URL": redis_server.url}
        app = create_app(SAMPLE, load_settings({**base, **env}))
        app.config["LOG_DIR"] = tmp_path / "log" / "sample"
        return app

    return build


@pytest.fixture
def client(make_app):
    return make_app().test_client()
