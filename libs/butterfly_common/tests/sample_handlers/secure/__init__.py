"""Admin-only handlers."""

from butterfly_common import Refusal, api, retstat


@api(admin=True)
def wipe(req):
    return retstat.OK, {"wiped": True}


@api
def whoami(req):
    return retstat.OK, {"ip": req.ip, "user": req.username}


@api
def login(req, user: str, password: str):
    return retstat.OK


@api(write=True)
def change(req, value: str = "x"):
    """A write action: the operator role."""
    return retstat.OK, {"changed": value, "user": req.username}


@api(write=True, role="admin")
def drop(req, value: str = "x"):
    """A destructive write action: the admin role."""
    return retstat.OK, {"dropped": value, "user": req.username}


@api
def refuse(req, code: int | None = None):
    """Refuses with the framework Refusal (HTTP status ``code`` when given)."""
    raise Refusal("ERR_NOPE", "no, because", {"hint": 1}, http=code)
