"""如期 ruqi: cron / interval / date jobs that run exactly once across any number of replicas.

Jobs live in the database (peewee), fire times come from APScheduler 3.x triggers, and
replicas agree on who runs each fire through one-key Redis commands (see ``engine.py``).
"""

from butterfly_common.service import Service

from .config import RuqiConfig
from .jobs import HTTP_CODES
from .runner import setup, start_engine

service = Service(
    name="ruqi",
    port=4100,
    handlers="butterfly_ruqi.handlers",
    description="如期 HA scheduler: cron / interval / date jobs, each fire run once",
    starters=[start_engine],
    setup=setup,
    env_prefix="RUQI",
    config=RuqiConfig,
    statuses=HTTP_CODES,
)

__all__ = ["service"]
