"""One handler per outcome a message can have: answered, refused, raised, retried."""

from collections import Counter

from butterfly_common import Refusal, Request, api, mq, retstat

#: calls per key of ``flaky``, in this process (no Redis: the stub's tests have none)
CALLS: Counter[str] = Counter()


@api
def greet(req: Request, name: str):
    return retstat.OK, {"greeting": f"hello, {name}", "method": req.method,
                        "reqid": req.reqid}


@api
def nope(req: Request, what: str = "thing"):
    raise Refusal("ERR_NO_SUCH_THING", f"no such {what}", {"what": what})


@api
def boom(req: Request):
    raise RuntimeError("the handler blew up")


@api
def flaky(req: Request, key: str, failures: int):
    """Raise until called ``failures`` times for ``key``, then answer."""
    CALLS[key] += 1
    req.progress(CALLS[key], failures + 1, f"call {CALLS[key]}")
    if CALLS[key] <= failures:
        raise RuntimeError(f"failure {CALLS[key]}")
    return retstat.OK, {"calls": CALLS[key]}


@api
def chain(req: Request, name: str):
    """Queue the next step: the message it publishes goes where ``mq.publish`` points."""
    return retstat.OK, {"next": mq.publish("/tasks/greet", {"name": name}).msg_id}
