"""百川 baichuan: the HTTP face of the queue, served on port 4300.

``/baichuan/publish`` queues a handler call, ``msg`` / ``wait`` fetch its outcome, and the
admin routes list, requeue and clean topics. The queue protocol itself lives in
``butterfly_common.mq`` (every service consumes through it); this package adds the HTTP
API (``handlers/baichuan``), its checks (``queue_admin``), the stats and HTTP codes of its
refusals (``refusals``), its ``BAICHUAN_*`` config and a maintenance thread with
Prometheus gauges (``maintenance``).
"""

from butterfly_common.service import Service

from .config import BaichuanConfig, check_config
from .maintenance import start_maintenance
from .refusals import HTTP_CODES, QueueRefusals

service = Service(
    name="baichuan",
    port=4300,
    handlers="butterfly_baichuan.handlers",
    description="百川 message queue: HTTP publish / status / admin API",
    starters=[start_maintenance],
    setup=check_config,
    env_prefix="BAICHUAN",
    config=BaichuanConfig,
    middleware=[QueueRefusals()],
    statuses=HTTP_CODES,
)
