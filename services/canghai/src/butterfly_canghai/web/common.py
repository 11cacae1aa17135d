"""Helpers the console's views share: role checks, rendering, audit entries, safe redirects."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any, cast
from urllib.parse import quote, urlsplit

from flask import abort, g, redirect, render_template, request

from butterfly_common.auth import client_identity
from butterfly_common.runtime import get_settings

from .. import audit


def client_ip() -> str:
    """The caller's address (a trusted proxy's X-Real-IP / X-Forwarded-For believed)."""
    headers = cast(Mapping[str, str], request.headers)
    return client_identity(request.remote_addr, headers, get_settings().trusted_proxies)[0]


def needs(role: str) -> Callable:
    """The view needs a signed-in user with ``role`` or above: checked on the server, so a
    viewer who forges a request to an operator action gets 403 whatever the page shows."""

    def wrap(view: Callable) -> Callable:
        @functools.wraps(view)
        def inner(*args: Any, **kwargs: Any) -> Any:
            user = g.get("user")
            if user is None:
                if request.method == "GET":
                    back = quote(safe_next(request.full_path), safe="/")
                    return redirect(f"/console/login?next={back}")
                abort(401)
            if not user.can(role):
                audit.record(user.username, user.role, "forbidden", request.path, ok=False,
                             ip=client_ip(), reqid=g.reqid)
                abort(403, f"needs role {role}")
            return view(*args, **kwargs)

        return inner

    return wrap


def page(template: str, **context: Any) -> str:
    return render_template(template, user=g.get("user"), lang=g.get("lang"),
                           csrf=g.get("csrf", ""), **context)


def log(action: str, target: str = "", detail: str = "", ok: bool = True) -> None:
    user = g.user
    audit.record(user.username, user.role, action, target, detail, ok, client_ip(), g.reqid)


def safe_next(value: str | None, default: str = "/console/") -> str:
    """A local path to go back to, never another site (open-redirect guard). A value with
    a control character (CR/LF would split the ``Location`` header) is a 400."""
    if not value:
        return default
    if any(ord(c) < 0x20 or ord(c) == 0x7f for c in value):
        abort(400, "next: control characters are not allowed")
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or not value.startswith("/") or value.startswith("//") \
            or "\\" in value:
        return default
    return value.rstrip("?") or default


def int_arg(name: str, default: int, lo: int = 1, hi: int = 1000) -> int:
    try:
        value = int(request.args.get(name, default))
    except ValueError:
        return default
    return max(lo, min(hi, value))
