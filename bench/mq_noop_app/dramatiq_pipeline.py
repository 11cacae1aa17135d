"""The Dramatiq peer of bench/xingqiao.py: one no-op actor chained 10 times in a
``dramatiq.pipeline``, with the Results middleware so the caller can wait for the end."""

import os

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.results import Results
from dramatiq.results.backends import RedisBackend

broker = RedisBroker(url=os.environ["BENCH_REDIS_URL"], namespace="dq-pipeline")
broker.add_middleware(Results(backend=RedisBackend(url=os.environ["BENCH_REDIS_URL"],
                                                   namespace="dq-results")))
dramatiq.set_broker(broker)


@dramatiq.actor(queue_name="pipeline", max_retries=0, store_results=True)
def step(previous=None) -> int:
    """Do nothing but pass a counter on (so the pipeline has a result to wait for)."""
    return (previous or 0) + 1
