"""The console's web layer: Flask blueprints for pages, sign-in and tokens.

:func:`install` is canghai's ``Service.web`` hook: the framework serves handler routes
(``/canghai/*`` and the built-ins) first and hands every other path to this Flask app.
Every request gets a reqid, a language and the signed-in user (or none); every POST must
carry the session's CSRF token; every answer carries a strict Content-Security-Policy
(scripts only from this origin, so an injected ``<script>`` could not run even if a value
escaped Jinja's autoescaping).
"""

from __future__ import annotations

import datetime as dt
import hmac
import json
import secrets
import time
from typing import Any

from flask import Flask, abort, g, redirect, request, session
from flask.sessions import SecureCookieSessionInterface
from werkzeug.exceptions import HTTPException

from butterfly_common import __version__
from butterfly_common.app import header_safe
from butterfly_common.logs import current_reqid
from butterfly_common.reqid import NO_REQID, is_valid_reqid, new_reqid
from butterfly_common.runtime import get_config

from .. import audit, sessions
from ..access import Identity, from_session_data
from ..config import CanghaiConfig, current_secret
from ..limits_form import group_lines
from .common import client_ip
from .i18n import pick_lang, translate

#: every console form posts to one of these; huoyan's JSON token endpoint is exempt (a
#: cross-site page cannot send a JSON body without a CORS preflight we never answer)
CSRF_BLUEPRINTS = ("console", "console_auth", "actions", "schedule", "data", "flows",
                   "releases", "batches")
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
       "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
       "form-action 'self'")


def install(app: Flask) -> None:
    """Configure sessions and register the console, auth and huoyan routes on ``app``."""
    from . import (
        actions,
        auth,
        batch_pages,
        data_pages,
        flow_pages,
        pages,
        release_pages,
        schedule_pages,
        search_pages,
        services_pages,
        traffic_pages,
    )

    cfg = get_config(CanghaiConfig)
    app.secret_key = current_secret().key("session")
    app.config.update(
        SESSION_COOKIE_NAME=sessions.COOKIE, SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax", SESSION_COOKIE_SECURE=cfg.cookie_secure,
        PERMANENT_SESSION_LIFETIME=dt.timedelta(hours=cfg.session_hours),
        SESSION_REFRESH_EACH_REQUEST=False,
    )
    interface = app.session_interface
    assert isinstance(interface, SecureCookieSessionInterface)  # Flask's default
    sessions.install(interface.get_signing_serializer(app), cfg.session_hours * 3600)
    app.register_blueprint(pages.bp)
    app.register_blueprint(actions.bp)
    app.register_blueprint(schedule_pages.bp)
    app.register_blueprint(data_pages.bp)
    app.register_blueprint(release_pages.bp)
    app.register_blueprint(flow_pages.bp)
    app.register_blueprint(traffic_pages.bp)
    app.register_blueprint(batch_pages.bp)
    app.register_blueprint(services_pages.bp)
    app.register_blueprint(search_pages.bp)
    app.register_blueprint(auth.bp)
    app.register_blueprint(auth.huoyan)
    app.before_request(_before)
    app.after_request(_after)
    app.teardown_request(_forget_reqid)
    for code in (400, 401, 403, 405, 413, 502):
        app.register_error_handler(code, _refused)
    app.jinja_env.globals.update(t=_t, fmt_time=fmt_time, fmt_json=fmt_json,
                                 group_lines=group_lines, version=__version__)
    app.jinja_env.filters["tojson_text"] = lambda v: json.dumps(v, ensure_ascii=False,
                                                                sort_keys=True)
    # "/" belongs to the console: send people to its overview
    app.view_functions["dispatch"] = lambda path="": redirect("/console/")


def _t(key: str, **fmt: object) -> str:
    return translate(g.get("lang", "en"), key, **fmt)


def fmt_time(ts: float | None) -> str:
    if not ts:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(ts)))


def fmt_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, indent=2, sort_keys=True)


def csrf_token() -> str:
    token = session.get("csrf")
    if not token:
        token = session["csrf"] = secrets.token_urlsafe(32)
    return token


def _forget_reqid(_: BaseException | None) -> None:
    """The page's reqid ends with the page: a thread that serves nothing next (or a test
    process) must not send it on with its own calls to other services."""
    current_reqid.set(NO_REQID)


def _before() -> None:
    incoming = (request.headers.get("x-reqid") or "").upper()
    g.reqid = incoming if is_valid_reqid(incoming) else new_reqid()
    current_reqid.set(g.reqid)  # logs and calls to other services carry the page's reqid
    cfg = get_config(CanghaiConfig)
    g.lang = pick_lang(request.cookies.get("canghai_lang"),
                       request.headers.get("Accept-Language", ""), cfg.default_lang)
    g.user = from_session_data(dict(session)) if "u" in session else None
    static = (request.endpoint or "").endswith(".static")
    g.csrf = csrf_token() if request.path.startswith("/console") and not static else ""
    if request.method == "POST" and request.blueprint in CSRF_BLUEPRINTS:
        given = request.form.get("csrf_token") or request.headers.get("X-CSRF-Token") or ""
        expected = session.get("csrf") or ""
        if not (given and expected and hmac.compare_digest(given, expected)):
            user: Identity | None = g.user
            audit.record(user.username if user else "-", user.role if user else "",
                         "csrf_refused", request.path, ok=False, ip=client_ip(),
                         reqid=g.reqid)
            abort(403, "CSRF token missing or wrong")


def _refused(exc: HTTPException) -> Any:
    """A refusal of a console route: the error page, and its reason in ``x-reason`` (as
    every Butterfly refusal says why)."""
    from .common import page

    g.reason = exc.description or exc.name
    if not request.path.startswith("/console") or request.path.startswith("/console/static"):
        return exc
    key = {401: "sign_in", 403: "forbidden", 502: "service_down"}.get(exc.code or 400,
                                                                     "refused")
    return page("error.html", message=key, detail=g.reason), exc.code


def _after(response: Any) -> Any:
    if response.status_code >= 400 and "x-reason" not in response.headers:
        reason = g.get("reason") or response.status
        response.headers["x-reason"] = header_safe(str(reason))[:300]
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    if request.path.startswith("/console") and response.mimetype == "text/html":
        response.headers.setdefault("Cache-Control", "no-store")
    response.headers["x-reqid"] = g.get("reqid", "")
    response.headers["butterfly"] = __version__
    return response
