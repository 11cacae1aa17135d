"""ruqi over its HTTP API (canghai never imports another service).

Calls carry canghai's service credential (``Authorization: Bearer <BUTTERFLY_ADMIN_TOKEN>``
when set), the console user as ``X-Username`` (honoured when canghai is one of ruqi's
``BUTTERFLY_TRUSTED_PROXIES``) and the page's ``x-reqid``, so ruqi's log names the same
request as canghai's audit log.
"""

from __future__ import annotations

import os
from typing import Any

import requests

from butterfly_common.runtime import get_settings

DEFAULT_URL = "http://127.0.0.1:4100"
TIMEOUT = 5.0


class RuqiError(Exception):
    """ruqi refused or could not be reached; ``stat`` and ``reason`` say why."""

    def __init__(self, stat: str, reason: str) -> None:
        super().__init__(f"{stat}: {reason}")
        self.stat, self.reason = stat, reason


def base_url() -> str:
    return (os.environ.get("BUTTERFLY_RUQI_URL") or DEFAULT_URL).rstrip("/")


def call(path: str, username: str = "-", reqid: str | None = None, **params: Any) -> Any:
    """POST ``/ruqi/<path>`` with JSON params; the ``data`` of an OK answer."""
    headers = {"X-Username": username}
    token = get_settings().admin_token
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if reqid:
        headers["x-reqid"] = reqid
    body = {k: v for k, v in params.items() if v is not None}
    try:
        reply = requests.post(f"{base_url()}/ruqi/{path}", json=body, headers=headers,
                              timeout=TIMEOUT)
    except requests.RequestException as exc:
        raise RuqiError("ERR_UNAVAILABLE", f"ruqi unreachable: {type(exc).__name__}") from None
    try:
        answer = reply.json()
    except ValueError:
        raise RuqiError("ERR_UNAVAILABLE", f"ruqi answered HTTP {reply.status_code}") from None
    stat = answer.get("stat") if isinstance(answer, dict) else None
    if stat != "OK":
        raise RuqiError(str(stat or reply.status_code), reply.headers.get("x-reason", ""))
    return answer.get("data")


def jobs(page_index: int = 1, page_size: int = 50, **kw: Any) -> dict[str, Any]:
    return call("get_jobs", page_index=page_index, page_size=page_size, **kw)


def job(job_id: str, **kw: Any) -> dict[str, Any]:
    return call("get_job", job_id=job_id, **kw)


def history(job_id: str | None = None, page_index: int = 1, page_size: int = 30,
            **kw: Any) -> dict[str, Any]:
    return call("get_history", job_id=job_id, page_index=page_index, page_size=page_size,
                **kw)
