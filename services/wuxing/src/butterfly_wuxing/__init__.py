"""五行 wuxing: typed, versioned configuration and inspection data, with history and watch.

Sections are versioned templates of typed items, instances hold one value per item, every
write gets a namespace revision and history rows, reads go through a Redis cache that is
never stale after a write answered, and ``/wuxing/watch`` long-polls the change feed.
See docs/architecture.md ("wuxing") for how the pieces fit.
"""

from butterfly_common.service import Service

from .config import WuxingConfig
from .errors import HTTP_STATUS
from .runner import setup, start_pruner

service = Service(
    name="wuxing",
    port=4200,
    handlers="butterfly_wuxing.handlers",
    description="五行 typed configuration / inspection data: revisions, CAS, history, watch",
    starters=[start_pruner],
    setup=setup,
    env_prefix="WUXING",
    config=WuxingConfig,
    statuses=HTTP_STATUS,
)

__all__ = ["service"]
