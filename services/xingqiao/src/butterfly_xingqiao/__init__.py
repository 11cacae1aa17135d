"""星桥 xingqiao: flows - DAGs of handler calls over the queue, event-driven, with retries,
timeouts, trigger rules and rerun from failure, on any number of replicas."""

from butterfly_common.service import Service

from .config import XingqiaoConfig
from .operations import HTTP_CODES, StoreRefusals
from .runner import setup, start_sweeper
from .triggers import HTTP_CODES as TRIGGER_CODES
from .triggers import MessageIds

service = Service(
    name="xingqiao",
    port=4700,
    handlers="butterfly_xingqiao.handlers",
    description="星桥 flow orchestration: DAGs of handler calls over the queue",
    starters=[start_sweeper],
    setup=setup,
    env_prefix="XINGQIAO",
    config=XingqiaoConfig,
    middleware=[StoreRefusals(), MessageIds()],
    statuses={**HTTP_CODES, **TRIGGER_CODES},
)

__all__ = ["service"]
