"""The WSGI app of a service: the framework's own callable, the shared :class:`Gateway`
behind it, and Flask only where a service has web pages.

Paths are looked up in the route table (exact, case-sensitive, one trailing slash
ignored), so routing stays the original's and costs one dict lookup. Handler routes and
the built-ins are served straight from WSGI; any other path gets the JSON 404 - or, in a
service with ``Service.web`` (canghai's console), goes to that service's Flask app, which
sits *behind* the routes and never wraps them.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, cast

from werkzeug.exceptions import NotFound, RequestEntityTooLarge
from werkzeug.test import Client
from werkzeug.utils import send_file
from werkzeug.wrappers import Request as HttpRequest
from werkzeug.wrappers import Response

from . import __version__, health, metrics, nesting, periodic, retstat, runtime
from .auth import client_identity
from .db import ping_db
from .discovery import Route
from .fastpath.response import plain_answer, respond_plain
from .gateway import Gateway
from .logs import configure_logging, init_log, log_directory
from .mq.probe import describe, unreachable
from .openapi import build_spec
from .params import ParamError, multidict_params
from .protocol import JSON_TYPE, Outcome, ProtocolSettings, dumps
from .reqid import is_valid_reqid, new_reqid
from .request import Request
from .service import Service, get_service
from .settings import Settings

METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
KNOWN_METHODS = frozenset(METHODS)
ALLOW = ", ".join(METHODS)
BODY_METHODS = ("POST", "PUT", "PATCH")
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Any]
#: environ flag: a chunked body went past BUTTERFLY_MAX_BODY_BYTES (see ``_bound_chunked``)
TOO_LARGE = "butterfly.body_too_large"
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def header_safe(text: str) -> str:
    """A value that cannot break or inject into HTTP headers."""
    text = text.encode("ascii", "backslashreplace").decode()
    return "".join(ch if " " <= ch <= "~" else "?" for ch in text)[:512]


def route_key(path: str) -> str:
    """The route table key of a request path: one trailing slash is ignored."""
    return path[:-1] if len(path) > 1 and path.endswith("/") else path


def request_values(http: HttpRequest) -> dict[str, Any]:
    """Query params, then a JSON object or form body over them (body wins)."""
    if http.environ.get("QUERY_STRING"):
        args = http.args
        values = multidict_params((k, args.getlist(k)) for k in args)
    else:  # most calls: no query string to parse
        values = {}
    if http.method not in BODY_METHODS:
        return values
    if http.mimetype in FORM_TYPES:
        form = http.form
        values.update(multidict_params((k, form.getlist(k)) for k in form))
        return values
    raw = http.get_data(cache=False)
    if raw.strip():
        try:
            body = nesting.loads(raw)
        except nesting.NestingError as exc:
            raise ParamError(str(exc)) from None
        except ValueError:
            raise ParamError("body is not valid JSON") from None
        if not isinstance(body, dict):
            raise ParamError("JSON body must be an object")
        values.update(body)
    return values


def _bound_chunked(environ: dict[str, Any], limit: int) -> None:
    """Give a chunked body the same limit as a Content-Length one.

    Werkzeug only *truncates* a body without Content-Length at ``max_content_length``
    (the handler then sees a cut body and answers 200). So read it here, at most
    ``limit + 1`` bytes: past the limit the request is flagged for a 413, otherwise the
    WSGI input is replaced by the bytes read, with their Content-Length.
    """
    if environ.get("CONTENT_LENGTH") or environ.get("REQUEST_METHOD") not in BODY_METHODS:
        return
    if "chunked" not in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
        return
    stream = environ["wsgi.input"]
    chunks, size = [], 0
    while size <= limit:
        chunk = stream.read(min(65536, limit + 1 - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    if size > limit:
        environ[TOO_LARGE] = True
        return
    body = b"".join(chunks)
    environ["wsgi.input"] = io.BytesIO(body)
    environ["CONTENT_LENGTH"] = str(len(body))
    environ.pop("wsgi.input_terminated", None)
    environ.pop("HTTP_TRANSFER_ENCODING", None)  # werkzeug ignores the length otherwise


class LocalClient(Client):
    """werkzeug's test client, with the peer address a real server always sets (without
    it a call would count as a queue call, which has no caller to identify)."""

    def open(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["environ_base"] = {"REMOTE_ADDR": "127.0.0.1", **(kwargs.get("environ_base") or {})}
        return super().open(*args, **kwargs)


class ServiceApp:
    """Everything one service's HTTP front needs, built once per process."""

    def __init__(self, service: Service, settings: Settings,
                 rt: runtime.ServiceRuntime | None = None) -> None:
        self.service = service
        self.settings = settings
        #: Shared with the queue consumer of this process (routes, gateway, config).
        self.runtime = rt or runtime.build_runtime(service, settings)
        self.routes: dict[str, Route] = self.runtime.routes
        self.gateway: Gateway = self.runtime.gateway
        self.conf: ProtocolSettings = self.gateway.conf
        #: Built-in endpoints; each gets the HTTP request (``/readyz?detail=1``).
        self.ops: dict[str, Callable[[HttpRequest | None], Outcome]] = {
            "/healthz": self.healthz, "/readyz": self.readyz,
            "/metrics": self.metrics, "/openapi.json": self.openapi,
        }
        self._openapi = dumps(build_spec(service.name, self.routes, service.description))
        #: ``BUTTERFLY_FASTPATH_RESPONSE``: API answers as plain WSGI (fastpath.response)
        self.fast_response = settings.fastpath_response
        #: The WSGI app of the service's web pages (``Service.web``, a Flask app) for the
        #: paths that are not routes; None answers them the JSON 404 here.
        self._web_wsgi: WSGIApp | None = None

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        return self.wsgi(environ, start_response)

    def mount_web(self, web: Any) -> None:
        """Serve the paths that are not routes with ``web`` (a Flask app)."""
        self._web_wsgi = web.wsgi_app

    def test_client(self) -> Client:
        """An in-process test client of this app (cookies kept, like a browser's)."""
        return LocalClient(self)

    @property
    def log_dir(self) -> Path | None:
        """Where this service writes its access and error logs (None: to stdout)."""
        return log_directory(self.settings, self.service.name)

    # -- built-in endpoints -------------------------------------------------------------
    def healthz(self, http: HttpRequest | None = None) -> Outcome:
        body = {"stat": retstat.OK, "service": self.service.name, "version": __version__}
        return Outcome(200, retstat.OK, dumps(body), [JSON_TYPE], "", body)

    def readyz(self, http: HttpRequest | None = None) -> Outcome:
        """Redis, the DB, every queue shard behind a proxy (:mod:`.mq.probe`) and the
        parts that report their own health (a consumer with dead threads): 503 naming
        what is down, else 200. With ``?detail=1`` the body also has ``loops``: the state
        of this process's background loops (:func:`.periodic.states`), which never
        decides readiness (a loop failing because a dependency is down shows in that
        dependency's entry; a loop whose thread died does, as ``periodic``)."""
        checks: dict[str, str] = {}
        for name, probe in (("redis", lambda: runtime.get_redis().ping()), ("db", ping_db)):
            try:
                probe()
                checks[name] = "ok"
            except Exception as exc:
                checks[name] = f"error: {type(exc).__name__}: {exc}"[:300]
        if checks["redis"] == "ok":
            try:
                down = unreachable(runtime.get_redis())
                checks["queue"] = describe(down) if down else "ok"
            except Exception as exc:
                checks["queue"] = f"error: {type(exc).__name__}: {exc}"[:300]
        for name, problem in health.problems().items():
            checks[name] = f"error: {problem}"
        ready = all(v == "ok" for v in checks.values())
        stat = retstat.OK if ready else retstat.ERR_UNAVAILABLE
        body: dict[str, Any] = {"stat": stat, **checks}
        if http is not None and http.args.get("detail", "").lower() in ("1", "true", "yes"):
            body["loops"] = periodic.states()
        reason = "" if ready else "dependency down: " + ",".join(
            k for k, v in checks.items() if v != "ok")
        return Outcome(200 if ready else 503, stat, dumps(body), [JSON_TYPE], reason, body)

    def metrics(self, http: HttpRequest | None = None) -> Outcome:
        text, content_type = metrics.render()
        return Outcome(200, 200, text, [("Content-Type", content_type)])

    def openapi(self, http: HttpRequest | None = None) -> Outcome:
        return Outcome(200, 200, self._openapi, [JSON_TYPE])

    # -- the request pipeline -----------------------------------------------------------
    def wsgi(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        """Handler and built-in routes, and the 404 of any other path (which goes to the
        service's web pages instead when it has some).

        A method outside :data:`METHODS` is answered 405 here, before any routing, so a
        made-up method reaches neither a handler nor a metrics label of its own.
        """
        key = route_key(environ.get("PATH_INFO") or "/")
        if environ.get("REQUEST_METHOD") not in KNOWN_METHODS:
            pass  # answer() gives the 405
        elif key in self.routes or key in self.ops:
            _bound_chunked(environ, self.settings.max_body_bytes)
        elif self._web_wsgi is not None:
            return self._web_wsgi(environ, start_response)
        elif key.startswith("//"):
            key = "/" + key.lstrip("/")  # leading slashes are one: the wire contract's
            if key in self.routes or key in self.ops:
                _bound_chunked(environ, self.settings.max_body_bytes)
        http = HttpRequest(environ)
        http.max_content_length = self.settings.max_body_bytes
        outcome, gateway_headers = self.answer(http, key)
        if self.fast_response and plain_answer(outcome):
            return respond_plain(outcome, gateway_headers, http.method, start_response)
        return self._response(http, outcome, gateway_headers)(environ, start_response)

    def web_not_found(self, path: str = "") -> Response:
        """The web pages' catch-all rule: the JSON 404 of a path neither a route nor a
        page (the same answer and access-log line as a service without pages)."""
        from flask import request

        http: HttpRequest = request._get_current_object()  # type: ignore[attr-defined]
        return self._response(http, *self.answer(http, route_key("/" + path)))

    def answer(self, http: HttpRequest, key: str) -> tuple[Outcome, list[tuple[str, str]]]:
        """Build the Request, serve ``key``, log the call; the outcome and the gateway's
        headers (the caller turns them into the HTTP response)."""
        # werkzeug's Headers answers .get() like the Mapping the rest of the code reads
        headers = cast(Mapping[str, str], http.headers)
        environ = http.environ
        incoming = environ.get("HTTP_X_REQID")  # what headers.get("x-reqid") reads
        reqid = incoming.upper() if incoming and is_valid_reqid(incoming.upper()) else new_reqid()
        ip, username = client_identity(environ.get("REMOTE_ADDR"), headers,
                                       self.settings.trusted_proxies)
        req = Request(reqid, ip=ip, username=username, method=http.method, funcname=key,
                      headers=headers, wsgienv=environ)
        route = self.routes.get(key)
        extra: list[tuple[str, str]] = []
        if http.method not in KNOWN_METHODS:
            outcome = self.conf.error(405, retstat.ERR_METHOD_NOT_ALLOWED,
                                      f"method not allowed; use one of {ALLOW}")
            outcome.status = retstat.HTTP_METHOD_NOT_ALLOWED  # in legacy mode too
            label = route.path if route is not None else metrics.UNKNOWN_ROUTE
            extra.append(("Allow", ALLOW))
        elif route is not None:
            outcome, label = self._serve(http, route, req), route.path
        elif key in self.ops:
            outcome, label = self.ops[key](http), key
        else:
            outcome, label = self.conf.not_found(), metrics.UNKNOWN_ROUTE
        if outcome.reason and not req.error_str:
            req.error_str = outcome.reason
        gateway_headers = [*extra, ("butterfly", __version__), ("x-reqid", reqid),
                           ("x-cost", f"{req.cost:.6f}")]
        if req.error_str:
            gateway_headers.append(("x-reason", header_safe(req.error_str)))
        self.gateway.finish(req, outcome, label)
        return outcome, gateway_headers

    def _serve(self, http: HttpRequest, route: Route, req: Request) -> Outcome:
        # the body is read only once the middleware's before_call hooks (the role check)
        # let the call through
        return self.gateway.call(route, req, lambda: self._values(http, req))

    def _values(self, http: HttpRequest, req: Request) -> Mapping[str, Any] | Outcome:
        """The call's parameters (query + body), or the answer to a body that is too large
        or malformed."""
        try:
            if http.environ.get(TOO_LARGE):
                raise RequestEntityTooLarge()
            return request_values(http)
        except RequestEntityTooLarge:
            limit = self.settings.max_body_bytes
            return self.conf.error(413, retstat.ERR_BODY_TOO_LARGE,
                                   f"body larger than {limit} bytes")
        except ParamError as exc:
            return self.gateway.bad_params(req, str(exc), {})

    @staticmethod
    def _response(http: HttpRequest, outcome: Outcome,
                  gateway_headers: list[tuple[str, str]]) -> Response:
        """The handler's headers first, then the gateway's, as the original ordered them."""
        if outcome.file is not None:
            f = outcome.file
            response = send_file(f.path, http.environ, mimetype=f.mimetype,
                                 as_attachment=f.as_attachment, download_name=f.path.name,
                                 conditional=True, max_age=0)
            response.headers.extend([*outcome.headers, *gateway_headers,
                                     ("X-Content-Type-Options", "nosniff")])
            return response
        if outcome.stream is not None:  # no Content-Length: gunicorn sends it chunked
            return Response(outcome.stream, status=outcome.status,
                            headers=[*outcome.headers, *gateway_headers],
                            direct_passthrough=True)
        return Response(outcome.body, status=outcome.status,
                        headers=[*outcome.headers, *gateway_headers])


def create_app(service: str | Service, settings: Settings | None = None) -> ServiceApp:
    """The WSGI app serving ``service``'s handlers plus healthz/readyz/metrics/openapi,
    and its web pages (``Service.web``) on a Flask app behind them."""
    if isinstance(service, str):
        service = get_service(service)
    rt = runtime.build_runtime(service, settings)  # validates the service's config
    settings = rt.settings
    configure_logging(settings, service.name)
    app = ServiceApp(service, settings, rt)
    if service.web is not None:
        app.mount_web(_web_app(app, service.web))
    started = time.perf_counter()
    for route in app.routes.values():
        init_log.info("route %s kind=%s admin=%s topic=%s", route.path, route.spec.kind,
                      route.spec.admin, route.is_topic)
    init_log.info("service %s ready with %d routes in %.3fs", app.service.name,
                  len(app.routes), time.perf_counter() - started)
    return app


def _web_app(app: ServiceApp, install: Callable[[Any], None]) -> Any:
    """The Flask app of a service's pages: ``install`` adds its routes; a path matching
    none gets the framework's JSON 404 (also a path the catch-all rule cannot match, such
    as one with a newline), never Flask's HTML page."""
    from flask import Flask, request

    web = Flask(f"butterfly_{app.service.name}")
    web.config["MAX_CONTENT_LENGTH"] = app.settings.max_body_bytes
    web.add_url_rule("/", "not_found", app.web_not_found, methods=METHODS)
    web.add_url_rule("/<path:path>", "not_found_path", app.web_not_found, methods=METHODS)
    web.register_error_handler(NotFound, lambda exc: app.web_not_found(request.path[1:]))
    install(web)
    return web
