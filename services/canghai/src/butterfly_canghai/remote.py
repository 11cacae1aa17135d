"""The fleet's services over their HTTP API, with the framework's envelope client.

canghai never imports another service's code: wuxing (data), xingqiao (flows) and ruqi
(jobs) are reached at ``BUTTERFLY_<SVC>_URL`` (else the installed service's port, else the
fleet's default port). Calls carry canghai's service credential (``Authorization: Bearer
<BUTTERFLY_ADMIN_TOKEN>``), the console user as ``X-Username`` (the callee records it
when canghai is one of its ``BUTTERFLY_TRUSTED_PROXIES``) and the page's ``x-reqid``.
"""

from __future__ import annotations

import contextvars
from typing import Any

import requests

from butterfly_common.httpclient import CallError, ServiceClient
from butterfly_common.runtime import get_settings

TIMEOUT = 5.0
#: where each service listens when neither its URL nor its package is known here
DEFAULT_PORTS = {"ruqi": 4100, "wuxing": 4200, "xingqiao": 4700}
_user: contextvars.ContextVar[str] = contextvars.ContextVar("canghai_remote_user",
                                                            default="-")


class RemoteError(Exception):
    """The service refused (``stat``, ``reason``, HTTP ``status``) or was unreachable
    (``ERR_CALL_FAILED``, status 0)."""

    def __init__(self, stat: str, reason: str, status: int = 0,
                 data: dict[str, Any] | None = None) -> None:
        super().__init__(f"{stat}: {reason}")
        self.stat, self.reason, self.status = stat, reason, status
        self.data = data or {}

    @property
    def unreachable(self) -> bool:
        """No answer, or an answer that was not the callee's (5xx): the console says 502."""
        return self.status == 0 or self.status >= 500


class _Client(ServiceClient):
    def headers(self) -> dict[str, str]:
        return {**super().headers(), "X-Username": _user.get()}


_clients: dict[str, tuple[Any, _Client]] = {}


def client(service: str) -> _Client:
    """One pooled client per service and settings object."""
    settings = get_settings()
    cached = _clients.get(service)
    if cached is None or cached[0] is not settings:
        token = settings.admin_token or None
        try:
            c = _Client(service, token=token, timeout=TIMEOUT)
        except LookupError:  # not installed beside canghai and no BUTTERFLY_<SVC>_URL
            c = _Client(f"http://127.0.0.1:{DEFAULT_PORTS[service]}", token=token,
                        timeout=TIMEOUT)
        _clients[service] = cached = (settings, c)
    return cached[1]


def call(service: str, path: str, username: str = "-", timeout: float | None = None,
         **params: Any) -> dict[str, Any]:
    """``/<service>/<path>`` with ``params`` (None values left out): the whole envelope of
    an OK answer, else RemoteError."""
    token = _user.set(username)
    try:
        return client(service).request(f"/{service}/{path}",
                                       {k: v for k, v in params.items() if v is not None},
                                       timeout=timeout)
    except CallError as exc:
        raise RemoteError(exc.stat, exc.reason, exc.status, exc.data) from None
    finally:
        _user.reset(token)


def data(service: str, path: str, username: str = "-", **params: Any) -> Any:
    """The ``data`` of an OK answer (see :func:`call`)."""
    return call(service, path, username, **params).get("data")


def get_raw(service: str, path: str, **params: Any) -> requests.Response:
    """A GET answered by something other than an envelope (xingqiao's SVG graph)."""
    c = client(service)
    headers = {k: v for k, v in c.headers().items() if k != "Accept"}
    try:
        return c.session().get(f"{c.base_url}/{service}/{path}", params=params,
                               headers=headers, timeout=TIMEOUT)
    except requests.RequestException as exc:
        raise RemoteError("ERR_CALL_FAILED", f"{type(exc).__name__}: {exc}"[:300]) from None
