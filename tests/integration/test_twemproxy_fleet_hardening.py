"""A Twemproxy fleet against hostile input and a lost shard (issue 12's defects 1, 7 and
10): core (consuming) and baichuan under gunicorn, behind a real nutcracker in front of
two redis-server shards.

- deep messages (acceptance): 20 publishes of depth-600 data, then 10 ordinary messages: all
  10 finish within 30 s, no consumer thread lost (metric), ``/readyz`` 200;
- a shard lost: one shard killed, a topic on the live shard still publishes at 100 % and
  ``/readyz`` names what is down;
- a chunked body past ``BUTTERFLY_MAX_BODY_BYTES`` is 413, as with
  Content-Length.
"""

from __future__ import annotations

import re

import pytest
import requests

from butterfly_common.mq import Broker
from butterfly_common.mq.keys import TopicKeys
from butterfly_common.redis_client import make_redis
from butterfly_common.testing import ButterflyService, Nutcracker, RedisServer, wait_until

TOPIC = "/demo_api/hello"
MAX_BODY = 4096


@pytest.fixture(scope="module")
def fleet():
    shards = [RedisServer().start(), RedisServer().start()]
    proxy = Nutcracker([s.port for s in shards]).start()
    env = {"BUTTERFLY_REDIS_URL": proxy.url, "BUTTERFLY_CONSUME_MAX_IDLE": "0.1",
           "BUTTERFLY_MAX_BODY_BYTES": str(MAX_BODY)}
    core = ButterflyService("core", {**env, "BUTTERFLY_CONSUME": "1"})
    baichuan = ButterflyService("baichuan", env)
    try:
        with core, baichuan:
            wait_until(lambda: publish(baichuan, {"str_info": "warm"}).ok, 30,
                       what="core consuming")
            yield {"core": core, "baichuan": baichuan, "proxy": proxy, "shards": shards}
    finally:
        proxy.__exit__(None, None, None)
        for shard in shards:
            shard.__exit__(None, None, None)


def publish(baichuan: ButterflyService, data: dict, topic: str = TOPIC,
            **options) -> requests.Response:
    return requests.post(f"{baichuan.url}/baichuan/publish", timeout=10,
                         json={"topic": topic, "data": data, **options})


def deep(levels: int) -> dict:
    value: dict = {"leaf": 1}
    for _ in range(levels):
        value = {"a": value}
    return value


def metric(service: ButterflyService, name: str) -> float:
    text = requests.get(f"{service.url}/metrics", timeout=10).text
    return sum(float(m.group(1)) for m in re.finditer(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text,
                                                      re.M))


def test_deep_messages_never_stall_the_ordinary_ones(fleet):
    baichuan, core, proxy = fleet["baichuan"], fleet["core"], fleet["proxy"]
    for _ in range(20):
        body = '{"topic": "%s", "data": %s}' % (TOPIC, '{"a":' * 600 + "1" + "}" * 600)  # noqa: UP031
        reply = requests.post(f"{baichuan.url}/baichuan/publish", data=body, timeout=10,
                              headers={"Content-Type": "application/json"})
        assert reply.status_code == 400 and reply.json()["stat"] == "ERR_BAD_PARAMS"
    # and as an old publisher (before the limit) could have stored them
    legacy = Broker(make_redis(proxy.url))
    legacy.max_depth = 100_000
    for _ in range(20):
        legacy.publish(TOPIC, {"str_info": deep(600)})
    ids = [publish(baichuan, {"str_info": f"m{i}"}).json()["msg_id"] for i in range(10)]
    for msg_id in ids:
        done = requests.get(f"{baichuan.url}/baichuan/wait", timeout=40,
                            params={"msg_id": msg_id, "timeout": 30}).json()
        assert done["status"] == "finished", done
    text = requests.get(f"{core.url}/metrics", timeout=10).text
    assert 'butterfly_consumer_thread_restarts_total{role="run"} 0.0' in text
    assert metric(core, "butterfly_consumer_thread_restarts_total") == 0
    assert requests.get(f"{core.url}/readyz", timeout=10).status_code == 200
    workers = requests.get(f"{baichuan.url}/baichuan/workers", timeout=10).json()
    consumers = [w for w in workers["data"]["list"] if w["info"].get("service") == "core"]
    assert consumers and all(w["alive"] and w["info"]["healthy"] for w in consumers)


def test_a_chunked_body_over_the_limit_is_413(fleet):
    core = fleet["core"]

    def chunked(payload: bytes):
        for i in range(0, len(payload), 1000):
            yield payload[i:i + 1000]

    small = b'{"str_info": "chunked but small"}'
    ok = requests.post(f"{core.url}/demo_api/hello", data=chunked(small), timeout=10,
                       headers={"Content-Type": "application/json"})
    assert ok.status_code == 200 and ok.json()["str_info"] == "chunked but small"
    big = b'{"str_info": "' + b"x" * (MAX_BODY * 4) + b'"}'
    for body in (chunked(big), big):  # chunked and Content-Length alike
        reply = requests.post(f"{core.url}/demo_api/hello", data=body, timeout=10,
                              headers={"Content-Type": "application/json"})
        assert reply.status_code == 413, reply.text[:200]
        assert reply.json()["stat"] == "ERR_BODY_TOO_LARGE"
        assert f"larger than {MAX_BODY} bytes" in reply.headers["x-reason"]


def shard_of(shards: list[RedisServer], topic: str) -> int:
    key = TopicKeys.of(topic).workers  # written by every heartbeat
    return next(i for i, s in enumerate(shards) if make_redis(s.url).exists(key))


def test_one_shard_down_topics_on_the_other_publish_at_100_percent(fleet):
    baichuan, shards, proxy = fleet["baichuan"], fleet["shards"], fleet["proxy"]
    broker = Broker(make_redis(proxy.url))
    topics = [f"/app{i}/handler" for i in range(12)]
    broker.heartbeat("w-shard-test", topics, {"service": "test"}, ttl=600)
    down = shard_of(shards, TOPIC)
    live = [t for t in topics if shard_of(shards, t) != down]
    dead = [t for t in topics if shard_of(shards, t) == down]
    assert live and dead
    victim = shards[down]
    victim.kill()
    try:
        codes = [publish(baichuan, {"i": i}, topic=live[i % len(live)]).status_code
                 for i in range(100)]
        assert codes == [200] * 100, {c: codes.count(c) for c in set(codes)}
        # caller-chosen ids, lookups with topic, and a batch read: all on the live shard
        mine = publish(baichuan, {"i": "x"}, topic=live[0], msg_id="order-1")
        assert mine.status_code == 200 and mine.json()["created"] is True
        record = requests.get(f"{baichuan.url}/baichuan/msg", timeout=10,
                              params={"msg_id": "order-1", "topic": live[0]})
        assert record.status_code == 200 and record.json()["data"] == {"i": "x"}
        assert broker.get_many([("order-1", live[0])])[0].data == {"i": "x"}
        refused = publish(baichuan, {}, topic=dead[0])
        assert refused.status_code == 503 and refused.json()["stat"] == "ERR_MQ_UNAVAILABLE"
        ready = requests.get(f"{baichuan.url}/readyz", timeout=10)
        assert ready.status_code == 503
        assert f"topic {dead[0]}" in ready.json()["queue"]
        assert f"topic {live[0]}" not in ready.json()["queue"]
    finally:
        victim.__exit__(None, None, None)
        shards[down] = RedisServer(victim.port).start()
