"""沧海 canghai: the web console of the Butterfly fleet, with 火眼 huoyan sign-in (port 4400).

Server-rendered pages (Flask/Jinja2 + htmx, charts by uPlot, all served from the package)
over the queue, the consumers, ruqi's jobs and the fleet's health; the original canghai API
names for the original admin pages; users, sessions, CSRF, an audit log and JWTs for nginx
``auth_request``.
"""

from butterfly_common.service import Service

from .config import CanghaiConfig
from .guard import HTTP_CODES
from .runner import setup
from .sampler import start_sampler
from .web import install

service = Service(
    name="canghai",
    port=4400,
    handlers="butterfly_canghai.handlers",
    description="沧海 web console: queues, messages, consumers, jobs, fleet health; sign-in",
    starters=[start_sampler],
    setup=setup,
    web=install,
    env_prefix="CANGHAI",
    config=CanghaiConfig,
    statuses=HTTP_CODES,
)

__all__ = ["service"]
