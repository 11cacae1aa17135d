"""Eight topics that spread over two shards; each holds a message ``seconds``.

(Names like ``h0`` .. ``h7`` would all hash near each other, onto one shard.)
"""

import time

from butterfly_common import Request, api, retstat


def _hold(seconds: float, tag: str):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.005)
    return retstat.OK, {"tag": tag}


def _holder(name: str):
    """One of the eight topics' handlers: hold ``seconds``, answer ``tag``."""
    def handler(req: Request, seconds: float = 0.0, tag: str = ""):
        return _hold(seconds, tag)

    handler.__name__ = handler.__qualname__ = name
    handler.__doc__ = "Hold ``seconds``, answer ``tag``."
    return api(handler)


for _name in ("alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"):
    globals()[_name] = _holder(_name)


@api
def iota(req: Request, batch_id: str, kind: str, state: str, total: int, ok: int,
         notok: int, failed: int, data: dict):
    """A batch callback: answer what it was told."""
    return retstat.OK, {"batch_id": batch_id, "kind": kind, "ok": ok, "failed": failed}


@api
def kappa(req: Request, batch_id: str, kind: str, state: str, total: int, ok: int,
         notok: int, failed: int, data: dict):
    """A batch callback: answer what it was told."""
    return retstat.OK, {"batch_id": batch_id, "kind": kind, "ok": ok, "failed": failed}
