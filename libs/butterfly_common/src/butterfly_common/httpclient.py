"""Service-to-service calls over HTTP with the Butterfly envelope: the one client layer.

::

    from butterfly_common.httpclient import CallError, ServiceClient

    ruqi = ServiceClient("ruqi", token=settings.admin_token)
    job = ruqi.call("/ruqi/get_job", job_id="nightly")     # {"stat": "OK", ...}
    data = ruqi.data("/ruqi/get_job", {"job_id": "nightly"})  # its "data" member

Every call from one service to another goes through :class:`ServiceClient`; a service's
own client (``WuxingClient``, ``FlowClient``) is a thin subclass whose methods name the
routes. This module is the only one that reads another service's envelope:

- base URL: ``BUTTERFLY_<SVC>_URL`` (``Settings.service_urls``), else
  ``http://127.0.0.1:<port>`` of the installed service, else the caller's default; a URL
  may be given directly;
- the answer is the JSON envelope ``{"stat": ...}``; a stat other than ``OK`` raises a
  :class:`ServiceError` (the class chosen by the stat: :data:`ERRORS`, extended per client
  by :attr:`ServiceClient.errors`) with the callee's ``x-reason`` and HTTP status; no
  answer, a time-out or a body that is not an envelope raise :class:`TransportError`
  (:class:`CallTimeout` for a time-out). Both are :class:`CallError`;
- the current request's reqid travels as ``x-reqid`` (``logs.current_reqid``, set by the
  gateway for the call being served), so one id follows the work across services;
- one pooled ``requests.Session`` per client, shared by its threads: nothing on it changes
  after it is built (headers go per call, cookies are refused), so concurrent calls cannot
  leak one caller's state into another's. Every call has a connect and a read time-out,
  and proxies from the environment are never used: a service only reaches the hosts the
  operator configured.
"""

from __future__ import annotations

import json
import os
from collections.abc import Generator, Mapping
from http.cookiejar import DefaultCookiePolicy
from types import MappingProxyType
from typing import Any, ClassVar, cast

import requests
import urllib3
from requests.adapters import HTTPAdapter

from . import retstat, tracing
from .logs import current_reqid
from .reqid import NO_REQID

#: ``CallError.stat`` when the callee could not be reached or did not answer an envelope.
ERR_CALL_FAILED = "ERR_CALL_FAILED"
#: The longest a client waits for a connection unless told otherwise (s): a service on
#: the operator's network accepts within milliseconds or not at all.
CONNECT_TIMEOUT = 3.0
#: Connections each client keeps per host, one per thread calling at the same time.
POOL_SIZE = 32


class CallError(Exception):
    """A call that did not answer ``OK``: the callee's ``stat``, its ``x-reason`` (the
    message) and the HTTP ``status`` (0 when there was no HTTP answer). ``data`` is the
    answered body."""

    def __init__(self, stat: str, reason: str, status: int = 0,
                 data: dict[str, Any] | None = None) -> None:
        super().__init__(f"{stat}: {reason}" if reason else stat)
        self.stat = stat
        self.reason = reason
        self.status = status
        self.data = data or {}


class TransportError(CallError):
    """No envelope came back: the callee was unreachable, the connection broke, or what
    answered (a proxy's error page...) was not a Butterfly service. ``stat`` is
    :data:`ERR_CALL_FAILED`; ``status`` the HTTP status of a non-envelope answer, else 0."""

    def __init__(self, reason: str, status: int = 0) -> None:
        super().__init__(ERR_CALL_FAILED, reason, status)


class CallTimeout(TransportError):
    """The connect or read time-out ran out; the callee may still act on the call."""


class ServiceError(CallError):
    """The callee answered an envelope whose stat is not ``OK`` (a refusal).

    Subclasses stand for one stat (:attr:`STAT`); a client raises the one registered for
    the answered stat, this class for any other."""

    #: The stat this class stands for ("" for the base class: any stat).
    STAT: ClassVar[str] = ""


class BadParams(ServiceError):
    """The callee refused the parameters (``ERR_BAD_PARAMS``)."""

    STAT = retstat.ERR_BAD_PARAMS


class Unauthorized(ServiceError):
    """No credential the callee accepts (``ERR_UNAUTHORIZED``)."""

    STAT = retstat.ERR_UNAUTHORIZED


class Forbidden(ServiceError):
    """The credential's role is too low for the route (``ERR_FORBIDDEN``)."""

    STAT = retstat.ERR_FORBIDDEN


class NotFound(ServiceError):
    """No such route on the callee (``ERR_NOT_FOUND``)."""

    STAT = retstat.ERR_NOT_FOUND


class Unavailable(ServiceError):
    """A dependency of the callee is down (``ERR_UNAVAILABLE``)."""

    STAT = retstat.ERR_UNAVAILABLE


class ServerException(ServiceError):
    """The callee's handler raised (``ERR_SERVER_EXCEPTION``)."""

    STAT = retstat.ERR_SERVER_EXCEPTION


#: The framework's stats, which every service may answer.
ERRORS: Mapping[str, type[ServiceError]] = MappingProxyType({cls.STAT: cls for cls in (
    BadParams, Unauthorized, Forbidden, NotFound, Unavailable, ServerException)})


def errors_by_stat(*classes: type[ServiceError]) -> Mapping[str, type[ServiceError]]:
    """A client's ``errors`` table: the framework's (:data:`ERRORS`) and ``classes``,
    each under its ``STAT``."""
    return MappingProxyType({**ERRORS, **{cls.STAT: cls for cls in classes}})


def envelope_stat(body: Any) -> str | None:
    """The stat of a decoded Butterfly envelope; None when ``body`` is not one."""
    if isinstance(body, dict) and "stat" in body:
        return str(body["stat"])
    return None


def given(**params: Any) -> dict[str, Any]:
    """The parameters whose value is not None: a parameter left out takes the handler's
    default, where an explicit null is a value the handler binds."""
    return {k: v for k, v in params.items() if v is not None}


def base_url(name_or_url: str, default: str | None = None) -> str:
    """The base URL of service ``name_or_url`` (or the URL itself when it is one).

    ``BUTTERFLY_<SVC>_URL``, else the installed service's port on 127.0.0.1, else
    ``default``; with neither the service is unknown (``LookupError``)."""
    if "://" in name_or_url:
        return name_or_url.rstrip("/")
    from . import runtime

    name = name_or_url.lower()
    configured = runtime.get_settings().service_urls.get(name)
    if configured:
        return configured
    from .service import get_service

    try:
        return f"http://127.0.0.1:{get_service(name).port}"
    except LookupError:
        if default is None:
            raise
        return default.rstrip("/")


class _NoCookies(DefaultCookiePolicy):
    """Refuses every cookie: the session is shared by callers acting for different users,
    and the services' API is stateless."""

    def set_ok(self, cookie: Any, request: Any) -> bool:
        return False

    def return_ok(self, cookie: Any, request: Any) -> bool:
        return False


def _new_session() -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # no proxies nor netrc from the environment
    session.cookies.set_policy(_NoCookies())
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=POOL_SIZE, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


class ServiceClient:
    """Calls handlers of one service: ``.call("/app/handler", **params) -> dict``.

    ``timeout`` is the read time-out of a call (s), ``connect_timeout`` the connect one
    (default: the smaller of ``timeout`` and :data:`CONNECT_TIMEOUT`); ``token`` goes as
    ``Authorization: Bearer``. One instance serves any number of threads.
    """

    #: Stat -> exception class for this client's refusals (a service's client adds its own).
    errors: ClassVar[Mapping[str, type[ServiceError]]] = ERRORS
    #: The app a service's client calls: a path without its leading "/" is one of its
    #: handlers (``"get_job"`` -> ``/<app>/get_job``). None: every path is absolute.
    app: ClassVar[str | None] = None

    def __init__(self, name_or_base_url: str, token: str | None = None,
                 timeout: float = 5.0, connect_timeout: float | None = None,
                 default_url: str | None = None) -> None:
        self.base_url = base_url(name_or_base_url, default_url)
        self.token = token
        self.timeout = timeout
        self.connect_timeout = (min(timeout, CONNECT_TIMEOUT) if connect_timeout is None
                                else connect_timeout)
        self._pooled: tuple[int, requests.Session] | None = None

    def session(self) -> requests.Session:
        """The client's pooled session, shared by its threads (a new one after a fork:
        a worker must not use the connections its parent opened).

        No lock (one held at a fork would hang the child): two threads racing on the
        first call each build one; the last one stays, the other serves its one call."""
        pooled, pid = self._pooled, os.getpid()
        if pooled is None or pooled[0] != pid:
            pooled = self._pooled = (pid, _new_session())
        return pooled[1]

    def headers(self) -> dict[str, str]:
        """The headers of every call: the current reqid and the token."""
        headers = {"Accept": "application/json"}
        reqid = current_reqid.get()
        if reqid and reqid != NO_REQID:
            headers["x-reqid"] = reqid
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    def call(self, path: str, **params: Any) -> dict[str, Any]:
        """POST ``params`` as JSON to ``path``; the envelope when its stat is ``OK``.

        Raises :class:`ServiceError` for any other stat (``stat``, ``x-reason``, status)
        and :class:`TransportError` for a non-envelope answer, a connection failure or a
        time-out (``ERR_CALL_FAILED``). Every keyword is a handler parameter (even
        ``timeout``); see :meth:`request` for a per-call time limit.
        """
        return self.request(path, params)

    def data(self, path: str, params: dict[str, Any] | None = None,
             timeout: float | None = None) -> Any:
        """As :meth:`request`; the ``data`` member of the OK envelope (None if absent)."""
        return self.request(path, params, timeout).get("data")

    def request(self, path: str, params: dict[str, Any] | None = None,
                timeout: float | None = None) -> dict[str, Any]:
        """As :meth:`call`, with the parameters as a dict and an optional read time-out (s)."""
        url = self.base_url + self.route(path)
        read = timeout or self.timeout
        headers = self.headers()
        try:
            with tracing.client_span("POST", url, headers):  # a no-op unless tracing is on
                response = self.session().post(url, json=params or {}, headers=headers,
                                               timeout=(min(self.connect_timeout, read), read))
        except requests.Timeout as exc:
            raise CallTimeout(_failure(url, exc)) from None
        except requests.RequestException as exc:
            raise TransportError(_failure(url, exc)) from None
        return self._envelope(url, response)

    def _envelope(self, url: str, response: requests.Response) -> dict[str, Any]:
        """The OK envelope of ``response``, else the error it stands for."""
        reason = response.headers.get("x-reason", "")
        try:
            body = response.json()
        except ValueError:
            body = None
        stat = envelope_stat(body)
        if stat is None:
            raise TransportError(reason or f"{url}: HTTP {response.status_code}, "
                                 "not a butterfly envelope", response.status_code)
        if stat != retstat.OK:
            cls = self.errors.get(stat) or ERRORS.get(stat) or ServiceError
            raise cls(stat, reason, response.status_code, body)
        return cast(dict[str, Any], body)

    def stream(self, path: str, params: dict[str, Any] | None = None,
               timeout: float | None = None,
               media_type: str = "application/x-ndjson") -> Generator[Any, None, None]:
        """POST ``params`` to a route that answers a stream of JSON lines
        (``protocol.Stream``); each line decoded, as it arrives. ``timeout`` bounds each
        wait for data (not the whole stream).

        A refusal (an envelope) raises as in :meth:`request`; no answer, a broken
        connection, a line that is not JSON or an answer that is neither the stream nor
        an envelope raise :class:`TransportError`. Closing the iterator closes the
        connection.
        """
        url = self.base_url + self.route(path)
        read = timeout or self.timeout
        try:
            response = self.session().post(url, json=params or {}, headers=self.headers(),
                                           timeout=(min(self.connect_timeout, read), read),
                                           stream=True)
        except requests.Timeout as exc:
            raise CallTimeout(_failure(url, exc)) from None
        except requests.RequestException as exc:
            raise TransportError(_failure(url, exc)) from None
        with response:
            kind = response.headers.get("Content-Type", "").split(";")[0].strip()
            if kind != media_type:
                self._envelope(url, response)  # raises the refusal
                raise TransportError(f"{url}: an envelope where a {media_type} stream "
                                     "was asked for", response.status_code)
            try:
                for line in response.iter_lines(chunk_size=65536):
                    if line:
                        yield json.loads(line)
            except requests.Timeout as exc:
                raise CallTimeout(_failure(url, exc)) from None
            except (requests.RequestException, ValueError) as exc:
                # (a read cut short surfaces as a requests or a urllib3 error)
                raise TransportError(_failure(url, exc)) from None
            except urllib3.exceptions.HTTPError as exc:
                raise TransportError(_failure(url, exc)) from None

    def route(self, path: str) -> str:
        """The absolute path of ``path``: a handler name of :attr:`app`, or ``path``."""
        if path.startswith("/"):
            return path
        if self.app is None:
            raise ValueError(f"path must start with '/': {path!r}")
        return f"/{self.app}/{path}"

    def close(self) -> None:
        """Close the pooled connections (a later call opens new ones)."""
        pooled, self._pooled = self._pooled, None
        if pooled is not None:
            pooled[1].close()


def _failure(url: str, exc: Exception) -> str:
    return f"{url}: {type(exc).__name__}: {exc}"[:300]
