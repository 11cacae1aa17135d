"""A handler that calls another service, for the client layer's tests: what the callee
sees of a call made while a request is being served (its reqid)."""

from butterfly_common import Request, api, retstat
from butterfly_common.httpclient import CallError, ServiceClient


@api(topic=False)
def forward(req: Request, url: str, path: str, timeout: float = 2.0):
    """Call ``url`` + ``path`` and say how it went, with this request's reqid."""
    try:
        answer = ServiceClient(url, timeout=timeout).call(path)
    except CallError as exc:
        return retstat.OK, {"data": {"error": type(exc).__name__, "stat": exc.stat},
                            "reqid": req.reqid}
    return retstat.OK, {"data": {"answer": answer}, "reqid": req.reqid}
