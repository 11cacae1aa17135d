"""Admin-only handlers."""

from butterfly_common import api, retstat


@api(admin=True)
def wipe(req):
    return retstat.OK, {"wiped": True}


@api
def whoami(req):
    return retstat.OK, {"ip": req.ip, "user": req.username}


@api
def login(req, user: str, password: str):
    return retstat.OK
