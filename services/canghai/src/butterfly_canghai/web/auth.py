"""火眼 huoyan: the console's sign-in, and tokens for nginx ``auth_request`` and other clients.

``/auth/ssologin`` issues an HS256 JWT (JSON credentials, or the signed-in session), also
as the ``butterfly_token`` cookie the original admin pages read; ``/auth/verification``
answers 200 with a ``Username`` header (the original forgot it) or 401 with the login URL.
``/huoyan/<name>`` serves the same views (the original's code paths).
"""

from __future__ import annotations

import logging
import secrets
import time
from typing import Any
from urllib.parse import quote

from flask import Blueprint, g, jsonify, make_response, redirect, request, session

from butterfly_common.runtime import get_config, get_redis

from .. import audit, tokens, users
from ..access import Identity
from ..config import CanghaiConfig, current_secret
from ..lockout import Lockout
from .common import client_ip, page, safe_next

bp = Blueprint("console_auth", __name__, url_prefix="/console")
huoyan = Blueprint("huoyan", __name__)
log = logging.getLogger("butterfly.canghai.auth")
TOKEN_COOKIE = "butterfly_token"  # noqa: S105 - a cookie name, not a secret


def _lockout() -> Lockout:
    cfg = get_config(CanghaiConfig)
    return Lockout(get_redis(), cfg.lockout_failures, cfg.lockout_ip_failures,
                   cfg.lockout_minutes)


def check_password(username: str, password: str) -> tuple[users.User | None, str]:
    """The user, or None and why (``locked`` / ``bad_login``); counts failures."""
    ip = client_ip()
    lock = _lockout()
    if not lock.attempt(username, ip):  # counted before the (slow) password check
        audit.record(username, "", "sign_in", ip, "locked", ok=False, ip=ip, reqid=g.reqid)
        return None, "locked"
    user = users.authenticate(username, password)
    if user is None:
        audit.record(username, "", "sign_in", ip, "wrong credentials", ok=False, ip=ip,
                     reqid=g.reqid)
        return None, "bad_login"
    lock.succeeded(username, ip)
    return user, ""


@bp.get("/login")
def login_form() -> Any:
    return page("login.html", next=safe_next(request.args.get("next")), error="")


@bp.post("/login")
def login() -> Any:
    username = (request.form.get("username") or "").strip()
    password = request.form.get("password") or ""
    target = safe_next(request.form.get("next"))
    user, why = check_password(username, password)
    if user is None:
        # the form again with the reason (200: a browser logs any 4xx document as an error)
        return page("login.html", next=target, error=why, username=username), \
            429 if why == "locked" else 200
    session.clear()
    session.permanent = True
    session.update(u=user.username, ep=user.epoch, at=time.time(),
                   csrf=secrets.token_urlsafe(32))
    g.user = Identity(user.username, user.role, "session", session["csrf"])
    audit.record(user.username, user.role, "sign_in", "console", ok=True, ip=client_ip(),
                 reqid=g.reqid)
    return redirect(target)


@bp.post("/logout")
def logout() -> Any:
    user = g.get("user")
    if user is not None:
        audit.record(user.username, user.role, "sign_out", "console", ip=client_ip(),
                     reqid=g.reqid)
        # server-side: the replayed cookie and every JWT issued to the user stop working
        users.sign_out_everywhere(user.username)
    session.clear()
    response = redirect("/console/login")
    response.delete_cookie(TOKEN_COOKIE, path="/")
    return response


def _token_for(user: users.User) -> str:
    cfg = get_config(CanghaiConfig)
    ttl = cfg.session_hours * 3600
    try:
        users.publish_epoch(user, ttl + 60)  # the services check the token's ep against it
    except Exception as exc:  # Redis down: the token still works through huoyan (nginx)
        log.warning("epoch of %s not published: %s: %s", user.username,
                    type(exc).__name__, exc)
    return tokens.issue(current_secret().secret, user.username, user.role, user.epoch, ttl)


def _with_token_cookie(response: Any, token: str) -> Any:
    cfg = get_config(CanghaiConfig)
    # not HttpOnly: the original admin pages read it to send ``Bearer: <token>``
    response.set_cookie(TOKEN_COOKIE, token, max_age=int(cfg.session_hours * 3600), path="/",
                        secure=cfg.cookie_secure, samesite="Lax")
    return response


def ssologin() -> Any:
    """JSON ``{username, password}`` (or a signed-in session): a JWT for other clients."""
    body = request.get_json(silent=True) if request.method == "POST" else None
    if isinstance(body, dict):
        user, why = check_password(str(body.get("username") or ""),
                                   str(body.get("password") or ""))
        if user is None:
            status = 429 if why == "locked" else 401
            return jsonify(success=False, message=why, data={}), status
        token = _token_for(user)
        audit.record(user.username, user.role, "token_issued", "ssologin", ip=client_ip(),
                     reqid=g.reqid)
        return _with_token_cookie(jsonify(success=True, message="OK", data={
            "butterfly_token": token, "token": token, "username": user.username,
            "role": user.role, "permissions": user.role}), token)
    identity = g.get("user")
    target = safe_next(request.args.get("next"), "/")
    if identity is None:
        back = quote(safe_next(request.full_path, "/auth/ssologin"), safe="/")
        return redirect(f"/console/login?next={back}")
    user = users.get_user(identity.username)
    if user is None:
        return redirect("/console/login")
    token = _token_for(user)
    audit.record(user.username, user.role, "token_issued", "ssologin", ip=client_ip(),
                 reqid=g.reqid)
    return _with_token_cookie(redirect(target), token)


def verification() -> Any:
    """For nginx ``auth_request``: 200 + ``Username`` / ``X-Role`` headers, or 401."""
    token = tokens.bearer_of(request.headers)
    claims = tokens.verify(current_secret().secret, token) if token else None
    user = users.get_user(claims["username"]) if claims else None
    if user is None or (claims or {}).get("ep") != user.epoch:
        response = make_response(jsonify(success=False,
                                         message="You are not authorized: sign in first"), 401)
        response.headers["Location"] = "/auth/ssologin"
        return response
    response = make_response("", 200)
    response.headers["Username"] = user.username
    response.headers["X-Role"] = user.role
    return response


for blueprint, prefix in ((huoyan, "/auth"), (huoyan, "/huoyan")):
    blueprint.add_url_rule(f"{prefix}/ssologin", f"ssologin{prefix}", ssologin,
                           methods=["GET", "POST"])
    blueprint.add_url_rule(f"{prefix}/login", f"login{prefix}", ssologin, methods=["POST"])
    blueprint.add_url_rule(f"{prefix}/verification", f"verification{prefix}", verification,
                           methods=["GET", "POST", "HEAD"])
