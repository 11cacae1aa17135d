"""baichuan + core as real processes behind nutcracker: publish over HTTP, core consumes.

Shards keep an append-only file, so a shard restarted mid-run comes back with every
message that was acknowledged before it went down.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import requests

from butterfly_common.redis_client import make_redis
from butterfly_common.testing import (
    ButterflyService,
    Nutcracker,
    RedisServer,
    free_port,
    wait_until,
)

TOPIC = "/demo_api/hello"


class Shard:
    """A redis-server with AOF in a fixed dir, restartable on the same port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="bf-shard-"))
        self.server: RedisServer | None = None

    def start(self) -> None:
        self.server = RedisServer(self.port, "--appendonly", "yes", "--appendfsync", "always",
                                  "--dir", str(self.dir)).start()

    def stop(self) -> None:
        assert self.server is not None
        self.server.stop()


@pytest.fixture(scope="module")
def fleet():
    shards = [Shard(), Shard()]
    for shard in shards:
        shard.start()
    with Nutcracker([s.port for s in shards]) as proxy:
        env = {"BUTTERFLY_REDIS_URL": proxy.url, "BUTTERFLY_CONSUME_MAX_IDLE": "0.1"}
        core = ButterflyService("core", {**env, "BUTTERFLY_CONSUME": "1"})
        baichuan = ButterflyService("baichuan", env)
        with core, baichuan:
            for service in (core, baichuan):
                wait_until(lambda s=service: requests.get(f"{s.url}/healthz", timeout=2).ok,
                           30, what=f"{service.service} up")
            # publishing needs a live consumer of the topic: core's heartbeat
            wait_until(lambda: publish(baichuan, {"str_info": "warm"}).ok, 30,
                       what="core consuming")
            yield {"core": core, "baichuan": baichuan, "shards": shards, "proxy": proxy}
    for shard in shards:
        shard.stop()


def publish(baichuan: ButterflyService, data: dict, **options) -> requests.Response:
    return requests.post(f"{baichuan.url}/baichuan/publish", timeout=10,
                         json={"topic": TOPIC, "data": data, **options})


def test_publish_over_http_and_core_consumes(fleet):
    baichuan, core = fleet["baichuan"], fleet["core"]
    reply = requests.post(f"{baichuan.url}/baichuan/publish", timeout=10,
                          headers={"x-reqid": "0000000000E2E001"},
                          json={"topic": TOPIC, "data": {"str_info": "hi"}})
    assert reply.status_code == 200 and reply.json()["stat"] == "OK"
    msg_id = reply.json()["msg_id"]
    done = requests.get(f"{baichuan.url}/baichuan/wait", timeout=20,
                        params={"msg_id": msg_id, "timeout": 15}).json()
    assert done["stat"] == "OK" and done["status"] == "finished"
    assert done["result"] == {"stat": "OK", "str_info": "hi"}
    # the caller's reqid followed the message into core's access log
    log = core.log_dir / "acc.log"
    line = wait_until(lambda: next((x for x in log.read_text().splitlines() if msg_id in x),
                                   None), 10, what="core access line")
    assert "\t0000000000E2E001\tQUEUE\t/demo_api/hello\t" in line


def test_bad_publishes_answer_clear_refusals(fleet):
    baichuan = fleet["baichuan"]
    no_consumer = requests.post(f"{baichuan.url}/baichuan/publish", timeout=10,
                                json={"topic": "/nobody/serves", "data": {}})
    assert no_consumer.status_code == 409
    assert no_consumer.json()["stat"] == "ERR_NO_CONSUMER" and no_consumer.headers["x-reason"]
    bad_data = publish(baichuan, ["not", "an", "object"])
    assert bad_data.status_code == 400 and "data" in bad_data.headers["x-reason"]
    bad_params = publish(baichuan, {"wrong": 1})
    failed = requests.get(f"{baichuan.url}/baichuan/wait", timeout=20,
                          params={"msg_id": bad_params.json()["msg_id"]}).json()
    assert failed["status"] == "failed" and failed["attempts"] == 1
    assert "missing: str_info" in failed["error"]


def test_shard_restart_loses_nothing_acknowledged(fleet):
    baichuan, shards, proxy = fleet["baichuan"], fleet["shards"], fleet["proxy"]
    client = make_redis(proxy.url)
    # which shard holds the topic? read the shards directly
    owner = next(s for s in shards if make_redis(f"redis://127.0.0.1:{s.port}/0")
                 .exists(f"bc:{{{TOPIC}}}:workers"))
    acked = [publish(baichuan, {"str_info": f"m{i}"}, delay=2).json()["msg_id"]
             for i in range(20)]
    owner.stop()
    down = publish(baichuan, {"str_info": "while down"})
    assert down.status_code == 503
    assert down.json()["stat"] == "ERR_MQ_UNAVAILABLE" and down.headers["x-reason"]
    lookup = requests.get(f"{baichuan.url}/baichuan/msg", params={"msg_id": acked[0]},
                          timeout=10)
    assert lookup.status_code == 503 and lookup.json()["stat"] == "ERR_MQ_UNAVAILABLE"
    owner.start()
    wait_until(lambda: publish(baichuan, {"str_info": "after"}).ok, 30,
               what="publishing resumes")
    for msg_id in acked:
        done = requests.get(f"{baichuan.url}/baichuan/wait", timeout=40,
                            params={"msg_id": msg_id, "timeout": 30}).json()
        assert done["status"] == "finished", done
    assert client.ping()
