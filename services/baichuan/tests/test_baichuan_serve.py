"""``butterfly serve baichuan`` for real (gunicorn, prometheus multiprocess mode): the
starter runs, the gauge shows on ``/metrics``, and the curl of the acceptance works."""

from __future__ import annotations

import requests
from baichuan_helpers import TOPIC

from butterfly_common.mq import Broker
from butterfly_common.redis_client import make_redis
from butterfly_common.testing import ButterflyService, wait_until


def test_serve_publish_wait_and_metrics(redis_server, redis):
    broker = Broker(make_redis(redis_server.url))
    broker.heartbeat("w1", [TOPIC])
    env = {"BUTTERFLY_REDIS_URL": redis_server.url, "BUTTERFLY_WORKERS": "2",
           "BAICHUAN_MAINTENANCE_INTERVAL": "0.2"}
    with ButterflyService("baichuan", env) as svc:
        body = requests.post(f"{svc.url}/baichuan/publish", timeout=10,
                             json={"topic": TOPIC, "data": {"str_info": "hi"}}).json()
        assert body["stat"] == "OK"
        [msg] = broker.claim(TOPIC, "w1")
        broker.complete(msg, {"stat": "OK", "str_info": "hi"})
        done = requests.get(f"{svc.url}/baichuan/wait", params={"msg_id": body["msg_id"]},
                            timeout=10).json()
        assert done["status"] == "finished"
        assert done["result"] == {"stat": "OK", "str_info": "hi"}

        def finished_gauge() -> bool:
            text = requests.get(f"{svc.url}/metrics", timeout=5).text
            return f'butterfly_queue_messages{{status="finished",topic="{TOPIC}"}} 1.0' in text

        wait_until(finished_gauge, 15, interval=0.1, what="gauge on /metrics")
