"""ruqi over its HTTP API with the framework's envelope client (canghai never imports it).

Calls carry canghai's service credential (``Authorization: Bearer <BUTTERFLY_ADMIN_TOKEN>``
when set), the console user as ``X-Username`` (honoured when canghai is one of ruqi's
``BUTTERFLY_TRUSTED_PROXIES``) and the page's ``x-reqid``, so ruqi's log names the same
request as canghai's audit log. ruqi's address: ``BUTTERFLY_RUQI_URL``, else its port.
"""

from __future__ import annotations

import contextvars
from typing import Any

from butterfly_common.httpclient import CallError, ServiceClient
from butterfly_common.runtime import get_settings

DEFAULT_URL = "http://127.0.0.1:4100"
TIMEOUT = 5.0
_user: contextvars.ContextVar[str] = contextvars.ContextVar("canghai_user", default="-")


class RuqiError(Exception):
    """ruqi refused or could not be reached; ``stat`` and ``reason`` say why."""

    def __init__(self, stat: str, reason: str) -> None:
        super().__init__(f"{stat}: {reason}")
        self.stat, self.reason = stat, reason


class _Ruqi(ServiceClient):
    def headers(self) -> dict[str, str]:
        return {**super().headers(), "X-Username": _user.get()}


_client: tuple[Any, _Ruqi] | None = None


def client() -> _Ruqi:
    """One pooled client per settings object."""
    global _client
    settings = get_settings()
    if _client is None or _client[0] is not settings:
        try:
            c = _Ruqi("ruqi", token=settings.admin_token or None, timeout=TIMEOUT)
        except LookupError:  # ruqi not installed beside canghai and no BUTTERFLY_RUQI_URL
            c = _Ruqi(DEFAULT_URL, token=settings.admin_token or None, timeout=TIMEOUT)
        _client = (settings, c)
    return _client[1]


def call(path: str, username: str = "-", **params: Any) -> Any:
    """``/ruqi/<path>`` with ``params``; the ``data`` of an OK answer, else RuqiError."""
    token = _user.set(username)
    try:
        answer = client().call(f"/ruqi/{path}", **{k: v for k, v in params.items()
                                                    if v is not None})
    except CallError as exc:
        raise RuqiError(exc.stat, exc.reason) from None
    finally:
        _user.reset(token)
    return answer.get("data")


def jobs(page_index: int = 1, page_size: int = 50, **kw: Any) -> dict[str, Any]:
    return call("get_jobs", page_index=page_index, page_size=page_size, **kw)


def job(job_id: str, **kw: Any) -> dict[str, Any]:
    return call("get_job", job_id=job_id, **kw)


def history(job_id: str | None = None, page_index: int = 1, page_size: int = 30,
            **kw: Any) -> dict[str, Any]:
    return call("get_history", job_id=job_id, page_index=page_index, page_size=page_size,
                **kw)
