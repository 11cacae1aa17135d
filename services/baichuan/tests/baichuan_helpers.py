"""Shared helpers of the baichuan tests (a uniquely named module: every package's tests
dir is on sys.path, so a plain ``conftest`` import could pick another package's)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask.testing import FlaskClient

from butterfly_common.app import create_app
from butterfly_common.settings import load_settings

TOKEN = "baichuan-admin-token-0123456789"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
OPERATOR_TOKEN = "baichuan-operator-token-0123456"
OPERATOR = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
TOPIC = "/demo_api/hello"


def make_client(tmp_path: Path, redis_url: str, **env: str) -> FlaskClient:
    """A test client of the baichuan app on ``redis_url``; ``env`` adds/overrides vars."""
    values = {"BUTTERFLY_LOG_DIR": str(tmp_path / "log"),
              "BUTTERFLY_DATA_DIR": str(tmp_path / "data"),
              "BUTTERFLY_REDIS_URL": redis_url, "BUTTERFLY_ADMIN_TOKEN": TOKEN,
              "BUTTERFLY_OPERATOR_TOKEN": OPERATOR_TOKEN, **env}
    values = {k: v for k, v in values.items() if v is not None}
    return create_app("baichuan", load_settings(values)).test_client()


def refused(response: Any, code: int, stat: str, *reason_words: str) -> dict:
    """Assert a refusal: HTTP ``code``, ``stat``, and an ``x-reason`` naming the problem."""
    body = response.get_json()
    assert response.status_code == code, (response.status_code, body,
                                          response.headers.get("x-reason"))
    assert body["stat"] == stat, body
    reason = response.headers.get("x-reason", "")
    assert reason, "refusals must say why in x-reason"
    for word in reason_words:
        assert word in reason, (word, reason)
    return body
