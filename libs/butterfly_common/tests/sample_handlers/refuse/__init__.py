"""Handlers that say no with the framework's Refusal, one per rule of the HTTP policy."""

from butterfly_common import Refusal, Request, api, raw, retstat


class StoreDown(Exception):
    """Stands for a dependency failure a middleware's on_exception maps to 503."""


@api
def plain(req: Request, what: str = "thing"):
    """No class given: 400."""
    raise Refusal("ERR_BAD_THING", f"no such {what}")


@api
def classed(req: Request):
    """The refusal names its class: 409."""
    raise Refusal("ERR_WRONG_STATE", "already running", {"state": "running"}, http=409)


@api(statuses={"ERR_GONE": 404, "ERR_NOT_YET": 200})
def mapped(req: Request, done: bool = False):
    """The route's statuses map decides when the refusal does not."""
    if done:
        raise Refusal("ERR_NOT_YET", "not done yet; ask again", {"progress": 0.5})
    raise Refusal("ERR_GONE", "it went away")


@api
def returned(req: Request):
    """A returned stat stays 200 (only refusals default to 400)."""
    return "ERR_SOFT", {"note": "returned"}


@api
def store_down(req: Request):
    raise StoreDown("connection refused")


@api
def ok(req: Request, n: int = 1):
    return retstat.OK, {"n": n, "user": req.username}


@raw
def raw_refusal(req: Request):
    raise Refusal("ERR_RAW", "raw handlers refuse in JSON too", http=403)
