"""The Dramatiq peer: a Redis broker on ``BENCH_REDIS_URL`` and one no-op actor.

``dramatiq mq_noop_app.dramatiq_actors`` imports this module in each worker process, so the
broker must be built at import time from the environment (the benchmark sets the URL of the
fresh redis-server it started for Dramatiq). The benchmark process itself publishes through
the same actor and calls :func:`use_broker` for each round's new server.
"""

import os

import dramatiq
from dramatiq.brokers.redis import RedisBroker

QUEUE = "default"


@dramatiq.actor(queue_name=QUEUE, max_retries=0,
                # no default URL on purpose: never touch a Redis the benchmark did not start
                broker=RedisBroker(url=os.environ["BENCH_REDIS_URL"]))
def noop() -> None:
    """Do nothing, as the baichuan handler does."""


dramatiq.set_broker(noop.broker)


def use_broker(url: str) -> RedisBroker:
    """Point the actor (and the global broker) at ``url``, closing the previous broker."""
    old, broker = noop.broker, RedisBroker(url=url)
    noop.broker = broker
    broker.declare_actor(noop)
    dramatiq.set_broker(broker)
    old.close()
    return broker
