"""Admin-only handlers."""

import logging
from typing import Annotated

from butterfly_common import Refusal, api, retstat
from butterfly_common.params import SECRET, Secret


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


@api
def store(req, name: str, value: Secret, extra: Annotated[dict | None, SECRET] = None,
          fail: str = ""):
    """Takes declared-secret values under names that look like nothing secret."""
    logging.getLogger("sample").warning("storing %s=%s extra=%s", name, value, extra)
    if fail == "refuse":
        raise Refusal("ERR_NOPE", f"value {value} is not allowed")
    if fail == "raise":
        raise RuntimeError(f"could not store {value!r}")
    return retstat.OK
