"""bench: the empty handler whose queue throughput bench/mq_throughput.py measures."""

from butterfly_common import api, retstat


@api
def noop(req):
    """Do nothing: what remains is the cost of the queue, the gateway and the access log."""
    return retstat.OK


@api
def item(req, item: int = 0):
    """A no-op map item (bench/xingqiao.py's map): takes its item, does nothing."""
    return retstat.OK
