"""Redis down: every route answers 503 ERR_MQ_UNAVAILABLE with a reason, never a 500, and
the service works again by itself once Redis is back."""

from __future__ import annotations

import threading
import time

import pytest
from baichuan_helpers import ADMIN, TOPIC, make_client, refused

from butterfly_common.mq import Broker
from butterfly_common.redis_client import make_redis
from butterfly_common.testing import RedisServer, wait_until

CALLS = [
    ("post", "/baichuan/publish", {"topic": TOPIC, "data": {}}),
    ("get", "/baichuan/msg", {"msg_id": "m1"}),
    ("get", "/baichuan/wait", {"msg_id": "m1", "timeout": 1}),
    ("get", "/baichuan/topics", {}),
    ("get", "/baichuan/msgs", {"topic": TOPIC}),
    ("get", "/baichuan/workers", {}),
    ("post", "/baichuan/requeue", {"topic": TOPIC, "msg_id": "m1"}),
    ("post", "/baichuan/delete", {"topic": TOPIC, "msg_id": "m1"}),
    ("post", "/baichuan/purge", {"topic": TOPIC}),
    ("get", "/baichuan/topic_limits", {"topic": TOPIC}),
    ("post", "/baichuan/set_topic_limits", {"topic": TOPIC, "max_running": 1}),
]


@pytest.fixture
def own_redis():
    with RedisServer() as server:  # stops it and removes its temp dir
        yield server


def call(client, method, path, args):
    if method == "get":
        return client.get(path, query_string=args, headers=ADMIN)
    return client.post(path, json=args, headers=ADMIN)


def test_redis_down_is_503_and_recovers(tmp_path, own_redis):
    client = make_client(tmp_path, own_redis.url)
    Broker(make_redis(own_redis.url)).heartbeat("w1", [TOPIC])
    assert client.post("/baichuan/publish", json={"topic": TOPIC, "data": {}}
                       ).status_code == 200
    own_redis.stop()
    for method, path, args in CALLS:
        started = time.monotonic()
        response = call(client, method, path, args)
        refused(response, 503, "ERR_MQ_UNAVAILABLE", "queue store unavailable")
        assert time.monotonic() - started < 5, path
    # same port, fresh empty server: the app reconnects without a restart
    with RedisServer(own_redis.port):
        Broker(make_redis(own_redis.url)).heartbeat("w1", [TOPIC])
        assert wait_until(lambda: client.post("/baichuan/publish", json={
            "topic": TOPIC, "data": {}}).status_code == 200, 10, what="publish after restart")


def test_redis_dies_during_wait(tmp_path, own_redis):
    client = make_client(tmp_path, own_redis.url)
    Broker(make_redis(own_redis.url)).heartbeat("w1", [TOPIC])
    msg_id = client.post("/baichuan/publish", json={"topic": TOPIC, "data": {}}
                         ).get_json()["msg_id"]
    killer = threading.Timer(0.3, own_redis.kill)
    killer.start()
    response = client.get("/baichuan/wait", query_string={"msg_id": msg_id, "timeout": 10})
    killer.join()
    refused(response, 503, "ERR_MQ_UNAVAILABLE")
