"""Authorization of the JSON API handlers (the original names): who may read or change.

Reads need any signed-in identity (a viewer and up); a change needs ``role`` and, for a
browser session, its CSRF token in ``X-CSRF-Token``. Each change lands in the audit log.
"""

from __future__ import annotations

from butterfly_common import retstat

from . import audit
from .access import Identity, csrf_ok, from_headers

STATUSES = {retstat.ERR_BAD_PARAMS: 400, retstat.ERR_UNAUTHORIZED: 401, retstat.ERR_FORBIDDEN: 403,
            "ERR_MSG_NOT_EXIST": 404, "ERR_WORKER_NOT_EXIST": 404,
            "ERR_METHOD_NOT_ALLOWED": 405}


class Denied(Exception):
    def __init__(self, stat: str, reason: str) -> None:
        super().__init__(reason)
        self.stat, self.reason = stat, reason


def identity_of(req, role: str = "viewer", write: bool = False) -> Identity:
    """The caller, or Denied (401 without identity, 403 without the role or CSRF)."""
    if write and req.method != "POST":
        raise Denied("ERR_METHOD_NOT_ALLOWED", "changes need POST")
    who = from_headers(req.headers, req.username)
    if who is None:
        raise Denied(retstat.ERR_UNAUTHORIZED, "sign in: session, Authorization: Bearer "
                     "<jwt> or the admin token")
    if not who.can(role):
        raise Denied(retstat.ERR_FORBIDDEN, f"needs role {role} (you are {who.role})")
    if write and not csrf_ok(who, req.headers.get("X-CSRF-Token")):
        raise Denied(retstat.ERR_FORBIDDEN, "CSRF token missing or wrong (X-CSRF-Token)")
    req.username = who.username  # the access log names the caller
    return who


def refuse(req, exc: Denied):
    req.error_str = exc.reason
    return exc.stat, {}


def log_action(req, who: Identity, action: str, target: str, detail: str = "",
               ok: bool = True) -> None:
    audit.record(who.username, who.role, action, target, detail, ok, req.ip, req.reqid)
