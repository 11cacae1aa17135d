"""The process's Broker, wherever the framework exposes its getter.

The shared contract names it ``mq.broker()``; on this main the name ``mq.broker`` is still
the ``broker`` submodule and the getter lives in ``mq.client``. One place to change.
"""

from __future__ import annotations

from butterfly_common import mq
from butterfly_common.mq import Broker


def broker() -> Broker:
    getter = getattr(mq, "broker", None)
    if callable(getter):
        return getter()
    from butterfly_common.mq.client import broker as client_broker

    return client_broker()
