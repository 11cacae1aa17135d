"""What the pages over another service (data, flows) share: calling it as the signed-in
user, and turning its refusals into a page (its status) or a 502 (no answer)."""

from __future__ import annotations

from typing import Any

from flask import g

from .. import remote
from ..remote import RemoteError
from .common import page


def fetch(service: str, path: str, **params: Any) -> Any:
    """``data`` of ``/<service>/<path>`` called for the signed-in user."""
    return remote.data(service, path, username=g.user.username, **params)


def envelope(service: str, path: str, **params: Any) -> dict[str, Any]:
    """The whole envelope of a call for the signed-in user (writes; reads that answer
    beside ``data``)."""
    return remote.call(service, path, username=g.user.username, **params)


def refusal_page(service: str, exc: RemoteError) -> Any:
    """The service's refusal as an error page: its own 4xx, or 502 when it did not answer."""
    g.reason = f"{service}: {exc.stat}: {exc.reason}"
    if exc.unreachable:
        return page("error.html", message="service_down", detail=f"{service}: {exc.reason}"), 502
    status = exc.status if 400 <= exc.status < 500 else 400
    return page("error.html", message="refused", detail=f"{exc.stat}: {exc.reason}"), status
