"""Shared helpers of canghai's tests: an in-process console app, sign-in, CSRF scraping."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from flask.testing import FlaskClient

from butterfly_common import db
from butterfly_common.app import create_app
from butterfly_common.serve import prepare
from butterfly_common.settings import load_settings

SECRET = "test-secret-key-of-the-fleet-0123456789abcdef"
ADMIN_TOKEN = "test-admin-token-0123456789"
PASSWORD = "correct horse battery"


def make_app(tmp_path: Path, redis_url: str, **env: str) -> Any:
    """The canghai app on ``redis_url`` and a fresh SQLite DB under ``tmp_path``."""
    from butterfly_canghai import service

    fleet = tmp_path / "fleet.toml"
    fleet.write_text("", encoding="utf-8")
    full = {"BUTTERFLY_REDIS_URL": redis_url, "BUTTERFLY_DATA_DIR": str(tmp_path / "data"),
            "BUTTERFLY_LOG_DIR": str(tmp_path / "log"), "BUTTERFLY_ADMIN_TOKEN": ADMIN_TOKEN,
            "BUTTERFLY_SECRET_KEY": SECRET, "CANGHAI_FLEET_FILE": str(fleet), **env}
    settings = load_settings(full)
    prepare(service, settings)  # what `butterfly serve` does once: config check, setup
    return create_app(service, settings)


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF field on the page"
    return match.group(1)


def sign_in(client: FlaskClient, username: str, password: str = PASSWORD) -> Any:
    csrf = csrf_of(client.get("/console/login").text)
    return client.post("/console/login", data={"username": username, "password": password,
                                               "csrf_token": csrf, "next": "/console/"})


def page_csrf(client: FlaskClient, path: str = "/console/queues") -> str:
    return csrf_of(client.get(path).text)


def close_db() -> None:
    if db.database.obj is not None and not db.database.is_closed():
        db.database.close()
