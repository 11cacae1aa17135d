"""Authorization of the JSON API handlers (the original names): who may read or change.

Reads need any signed-in identity (a viewer and up: a trusted proxy's ``X-Username`` is
one, as at every service); a change needs ``role``, POST and, for a browser session, its
CSRF token in ``X-CSRF-Token``. Refusals are ``Refusal``s (401 /
403 / 405 with ``x-reason``); each change lands in the audit log.
"""

from __future__ import annotations

from butterfly_common import Refusal, retstat

from . import audit
from .access import Identity, csrf_ok, from_headers

#: canghai's stat -> HTTP map (the Service's), so /openapi.json documents each refusal
HTTP_CODES = {retstat.ERR_UNAUTHORIZED: 401, retstat.ERR_FORBIDDEN: 403,
              "ERR_METHOD_NOT_ALLOWED": 405, "ERR_MSG_NOT_EXIST": 404,
              "ERR_WORKER_NOT_EXIST": 404}


def identity_of(req, role: str = "viewer", write: bool = False) -> Identity:
    """The caller, or a Refusal (401 without identity, 403 without the role or CSRF)."""
    if write and req.method != "POST":
        raise Refusal("ERR_METHOD_NOT_ALLOWED", "changes need POST", http=405)
    who = from_headers(req.headers, req.username)
    if who is None:
        raise Refusal(retstat.ERR_UNAUTHORIZED, "sign in: session, Authorization: Bearer "
                      "<jwt or token>, or X-Username from a trusted proxy", http=401)
    if not who.can(role):
        raise Refusal(retstat.ERR_FORBIDDEN, f"needs role {role} (you are {who.role})",
                      http=403)
    if write and not csrf_ok(who, req.headers.get("X-CSRF-Token")):
        raise Refusal(retstat.ERR_FORBIDDEN, "CSRF token missing or wrong (X-CSRF-Token)",
                      http=403)
    req.username = who.username  # the access log names the caller
    return who


def log_action(req, who: Identity, action: str, target: str, detail: str = "",
               ok: bool = True) -> None:
    audit.record(who.username, who.role, action, target, detail, ok, req.ip, req.reqid)
