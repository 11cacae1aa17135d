"""``front`` (HTTP) publishes to ``back`` (a queue topic), which calls core's ping."""

from butterfly_common import Request, api, mq, retstat
from butterfly_common.httpclient import ServiceClient


@api(topic=False)
def front(req: Request, n: int = 1):
    """Queue ``back`` with ``n``; answers the message id."""
    req.start_timming()
    result = mq.publish("/traced/back", {"n": n}, force=True)
    req.timming("publish")
    return retstat.OK, {"msg_id": result.msg_id}


@api
def back(req: Request, n: int):
    """Call core's ping (another service, over HTTP) and answer what it said."""
    answer = ServiceClient("core").call("/demo_api/ping")
    return retstat.OK, {"n": n, "core": answer["stat"]}
