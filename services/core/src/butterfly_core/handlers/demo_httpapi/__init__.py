"""demo_httpapi: raw handlers that choose their own HTTP status and body."""

from butterfly_common import Request, raw, retstat


@raw
def ping(req: Request):
    """Plain text ``pong`` with 200."""
    return retstat.HTTP_OK, "pong", [("Content-Type", "text/plain; charset=utf-8")]


@raw
def status(req: Request, code: int = 200):
    """Answer the HTTP status ``code`` (100-599) with a small JSON body."""
    if not 100 <= code <= 599:
        req.error_str = "code must be an HTTP status (100-599)"
        return retstat.HTTP_BAD_PARAM, {"stat": retstat.ERR_BAD_PARAMS}
    return code, {"code": code}


@raw
def teapot(req: Request):
    """A status code the protocol has no special case for."""
    return 418, "I'm a teapot\n"
