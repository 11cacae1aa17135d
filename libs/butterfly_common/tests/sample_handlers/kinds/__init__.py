"""One handler per protocol rule."""

import datetime as dt

from butterfly_common import Request, api, download, raw, retstat
from butterfly_common.paging import page

from ..secure import whoami  # noqa: F401 - another app's route: must not become kinds/whoami
from .helpers import imported_helper  # noqa: F401 - the app's own submodule: a route

SHARED = {"k": "v"}
CALLS = []


def plain(req: Request, x):
    """Undecorated: never a route."""
    return retstat.OK


@api
def echo(req: Request, a: str, b: int = 0, flag: bool = False, tags: list[str] | None = None,
         opts: dict | None = None, ratio: float = 1.0, anything=None):
    """Echo back the coerced parameters."""
    return retstat.OK, {"a": a, "b": b, "flag": flag, "tags": tags, "opts": opts,
                        "ratio": ratio, "anything": anything}


@api
def kwargs(req: Request, a: str, **rest):
    """Takes any extra parameter."""
    return retstat.OK, {"a": a, "rest": rest}


@api
def stat_only(req: Request):
    return "ERR_CUSTOM"


@api
def int_stat(req: Request):
    return 7


@api
def shared(req: Request):
    """Returns a module-level dict: must not be mutated."""
    return retstat.OK, SHARED


@api
def with_headers(req: Request):
    return retstat.OK, {"x": 1}, {"X-Extra": "1"}


@api
def when(req: Request):
    return retstat.OK, {"at": dt.datetime(2026, 1, 2, 3, 4, 5), "day": dt.date(2026, 1, 2)}


@api
def boom(req: Request):
    raise RuntimeError("secret internal detail")


@api
def bad_format(req: Request):
    return None


@api
def not_dict(req: Request):
    return retstat.OK, [1, 2]


@api
def unserialisable(req: Request):
    return retstat.OK, {"obj": object()}


@api(statuses={"ERR_NOT_THERE": 404})
def mapped(req: Request, there: bool = False):
    return retstat.OK if there else "ERR_NOT_THERE"


@api
def listing(req: Request, page_index: int = 1, page_size: int = 20):
    return retstat.OK, {"data": page(list(range(45)), page_index, page_size)}


@api
def timed(req: Request):
    req.timming("step")
    req.log_res.add("k=v")
    return retstat.OK


@raw
def raw_int(req: Request):
    return 204


@raw
def raw_text(req: Request):
    return 201, "hello\n"


@raw
def raw_dict(req: Request, code: int = 202):
    return code, {"stat": "OK"}


@raw
def raw_bad(req: Request):
    return "nope", "body"


@download
def fetch(req: Request, filename: str, inline: bool = False):
    return retstat.OK, {"filename": filename, "is_download": not inline}


echo_again = echo  # an alias: the same handler under a second path
