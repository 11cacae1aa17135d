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


@api
def alpha(req: Request, seconds: float = 0.0, tag: str = ""):
    """Hold ``seconds``, answer ``tag``."""
    return _hold(seconds, tag)


@api
def beta(req: Request, seconds: float = 0.0, tag: str = ""):
    """Hold ``seconds``, answer ``tag``."""
    return _hold(seconds, tag)


@api
def gamma(req: Request, seconds: float = 0.0, tag: str = ""):
    """Hold ``seconds``, answer ``tag``."""
    return _hold(seconds, tag)


@api
def delta(req: Request, seconds: float = 0.0, tag: str = ""):
    """Hold ``seconds``, answer ``tag``."""
    return _hold(seconds, tag)


@api
def epsilon(req: Request, seconds: float = 0.0, tag: str = ""):
    """Hold ``seconds``, answer ``tag``."""
    return _hold(seconds, tag)


@api
def zeta(req: Request, seconds: float = 0.0, tag: str = ""):
    """Hold ``seconds``, answer ``tag``."""
    return _hold(seconds, tag)


@api
def eta(req: Request, seconds: float = 0.0, tag: str = ""):
    """Hold ``seconds``, answer ``tag``."""
    return _hold(seconds, tag)


@api
def theta(req: Request, seconds: float = 0.0, tag: str = ""):
    """Hold ``seconds``, answer ``tag``."""
    return _hold(seconds, tag)


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
