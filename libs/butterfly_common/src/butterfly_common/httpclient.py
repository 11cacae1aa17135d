"""Service-to-service calls over HTTP with the Butterfly envelope.

::

    from butterfly_common.httpclient import CallError, ServiceClient

    ruqi = ServiceClient("ruqi", token=settings.admin_token)
    job = ruqi.call("/ruqi/get_job", job_id="nightly")     # {"stat": "OK", ...}

- base URL: ``BUTTERFLY_<SVC>_URL`` (``Settings.service_urls``), else
  ``http://127.0.0.1:<port>`` of the installed service; a URL may be given directly;
- the answer is the JSON envelope ``{"stat": ...}``; any stat but ``OK`` (or a body that
  is not an envelope, or no answer at all) raises :class:`CallError` with the callee's
  ``x-reason`` as the text;
- the current request's ``x-reqid`` travels with the call, so one id follows the work;
- connections are pooled (one ``requests.Session`` per client and thread), every call
  has a timeout, and proxies from the environment are never used: a service only
  reaches the hosts the operator configured.
"""

from __future__ import annotations

import threading
from typing import Any

import requests

from . import retstat
from .logs import current_reqid
from .reqid import NO_REQID

#: ``CallError.stat`` when the callee could not be reached or did not answer an envelope.
ERR_CALL_FAILED = "ERR_CALL_FAILED"


class CallError(Exception):
    """A call that did not answer ``OK``: the callee's ``stat``, its ``x-reason`` and the
    HTTP ``status`` (0 when there was no HTTP answer). ``data`` is the answered body."""

    def __init__(self, stat: str, reason: str, status: int = 0,
                 data: dict[str, Any] | None = None) -> None:
        super().__init__(f"{stat}: {reason}" if reason else stat)
        self.stat = stat
        self.reason = reason
        self.status = status
        self.data = data or {}


def base_url(name_or_url: str) -> str:
    """The base URL of service ``name_or_url`` (or the URL itself when it is one)."""
    if "://" in name_or_url:
        return name_or_url.rstrip("/")
    from . import runtime

    name = name_or_url.lower()
    configured = runtime.get_settings().service_urls.get(name)
    if configured:
        return configured
    from .service import get_service

    return f"http://127.0.0.1:{get_service(name).port}"


class ServiceClient:
    """Calls handlers of one service: ``.call("/app/handler", **params) -> dict``."""

    def __init__(self, name_or_base_url: str, token: str | None = None,
                 timeout: float = 5.0) -> None:
        self.base_url = base_url(name_or_base_url)
        self.token = token
        self.timeout = timeout
        self._local = threading.local()

    def session(self) -> requests.Session:
        """This thread's pooled session (requests' Session is not shared across threads)."""
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
            session.trust_env = False  # no proxies nor netrc from the environment
        return session

    def headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        reqid = current_reqid.get()
        if reqid and reqid != NO_REQID:
            headers["x-reqid"] = reqid
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    def call(self, path: str, **params: Any) -> dict[str, Any]:
        """POST ``params`` as JSON to ``path``; the envelope when its stat is ``OK``.

        Raises :class:`CallError` for any other stat (``stat``, ``x-reason``, status), for
        a non-envelope answer and for a connection failure or timeout
        (``ERR_CALL_FAILED``, status 0). Every keyword is a handler parameter (even
        ``timeout``); see :meth:`request` for a per-call time limit.
        """
        return self.request(path, params)

    def request(self, path: str, params: dict[str, Any] | None = None,
                timeout: float | None = None) -> dict[str, Any]:
        """As :meth:`call`, with the parameters as a dict and an optional time limit (s)."""
        if not path.startswith("/"):
            raise ValueError(f"path must start with '/': {path!r}")
        url = self.base_url + path
        try:
            response = self.session().post(url, json=params or {}, headers=self.headers(),
                                           timeout=timeout or self.timeout)
        except requests.RequestException as exc:
            raise CallError(ERR_CALL_FAILED, f"{url}: {type(exc).__name__}: {exc}"[:300]) \
                from None
        reason = response.headers.get("x-reason", "")
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or "stat" not in body:
            raise CallError(ERR_CALL_FAILED, reason or f"{url}: HTTP {response.status_code}, "
                            "not a butterfly envelope", response.status_code)
        if body["stat"] != retstat.OK:
            raise CallError(str(body["stat"]), reason, response.status_code, body)
        return body

    def close(self) -> None:
        session = getattr(self._local, "session", None)
        if session is not None:
            session.close()
