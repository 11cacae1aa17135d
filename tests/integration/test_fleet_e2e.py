"""The fleet of deploy/fleet.toml as real processes: two redis-server shards behind
nutcracker, MariaDB, core (consuming), baichuan and two ruqi replicas.

Publishing over HTTP yields results; a ruqi job publishing every second yields results;
one x-reqid follows a ruqi fire through the queue into core's access log; restarting a
service mid-run loses nothing.
"""

from __future__ import annotations

import itertools
import random
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import pytest
import requests

from butterfly_common.testing import (
    ButterflyService,
    Nutcracker,
    RedisServer,
    mariadb_database,
    wait_until,
)

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

from fleetdef import load_fleet  # noqa: E402

TOPIC = "/demo_api/hello"
#: ruqi's job control is a write action (issue 12): the fleet gets an operator token.
OPERATOR = "fleet-test-operator-token"
#: removing a job is an admin's action (the console's role table)
ADMIN = "fleet-test-admin-token-0123"


def get(service: ButterflyService, path: str, **params) -> dict:
    return requests.get(f"{service.url}{path}", params=params, timeout=30).json()


def post(service: ButterflyService, path: str, **body) -> requests.Response:
    token = ADMIN if path.endswith("/remove_job") else OPERATOR
    return requests.post(f"{service.url}{path}", json=body, timeout=30,
                         headers={"Authorization": f"Bearer {token}"})


@pytest.fixture(scope="module")
def fleet():
    with (mariadb_database("bf_fleet") as db_url, RedisServer() as s1, RedisServer() as s2,
          Nutcracker([s1.port, s2.port]) as proxy):
        env = {"BUTTERFLY_REDIS_URL": proxy.url, "BUTTERFLY_DB_URL": db_url,
               "BUTTERFLY_WORKERS": "1", "BUTTERFLY_CONSUME_MAX_IDLE": "0.1",
               "RUQI_TIMEZONE": "UTC", "RUQI_NODE_TTL": "1",
               "BUTTERFLY_OPERATOR_TOKEN": OPERATOR, "BUTTERFLY_ADMIN_TOKEN": ADMIN,
               "BUTTERFLY_SECRET_KEY": "fleet-test-secret-key-0123456789abcdef"}
        services = {inst.name: ButterflyService(inst.service, {**env, **inst.env})
                    for inst in load_fleet()}
        try:
            for service in services.values():
                service.start()
            for service in services.values():
                wait_until(lambda s=service: requests.get(f"{s.url}/readyz",
                                                          timeout=2).ok,
                           40, what=f"{service.service} ready")
            wait_until(lambda: post(services["baichuan"], "/baichuan/publish",
                                    topic=TOPIC, data={"str_info": "warm"}).ok, 30,
                       what="core consuming")
            yield services
        finally:
            for service in services.values():
                service.stop()


def test_fleet_matches_the_definition(fleet):
    assert set(fleet) == {inst.name for inst in load_fleet()}
    for service in fleet.values():
        assert get(service, "/healthz")["stat"] == "OK"
        assert get(service, "/readyz") == {"stat": "OK", "redis": "ok", "db": "ok",
                                            "queue": "ok"}


def test_publish_over_http_and_get_the_result(fleet):
    reply = post(fleet["baichuan"], "/baichuan/publish", topic=TOPIC, data={"str_info": "hi"})
    done = get(fleet["baichuan"], "/baichuan/wait", msg_id=reply.json()["msg_id"], timeout=15)
    assert done["status"] == "finished"
    assert done["result"] == {"stat": "OK", "str_info": "hi"}


def test_ruqi_job_publishes_every_second_and_one_reqid_follows_it(fleet):
    added = post(fleet["ruqi-1"], "/ruqi/add_job", job_trigger="interval", job_id="tick",
                 job_name="e2e", cmd=TOPIC + '#{"str_info": "tick"}', rule="1s").json()
    assert added["stat"] == "OK", added

    def ok_runs() -> list[dict]:
        rows = get(fleet["ruqi-2"], "/ruqi/get_history", job_id="tick",
                   page_index=1, page_size=50)["data"]["list"]
        return [r for r in rows if r["status"] == "ok"]

    runs = wait_until(lambda: r if len(r := ok_runs()) >= 3 else None, 20,
                      what="3 successful fires")
    reqid = runs[-1]["reqid"]
    # the queue kept the fire's reqid, and core logged its call under the same id
    finished = get(fleet["baichuan"], "/baichuan/msgs", topic=TOPIC, status="finished",
                   page_size=200)["data"]["list"]
    message = next(m for m in finished if m["reqid"] == reqid)
    assert message["result"] == {"stat": "OK", "str_info": "tick"}
    log = fleet["core"].log_dir / "acc.log"
    wait_until(lambda: f"\t{reqid}\tQUEUE\t{TOPIC}\t" in log.read_text(), 10,
               what="core access line with the fire's reqid")
    scheduled = sorted(r["scheduled_time"] for r in runs)
    assert len(set(scheduled)) == len(scheduled)  # no fire ran twice
    assert post(fleet["ruqi-1"], "/ruqi/remove_job", job_id="tick").json()["stat"] == "OK"


def test_restarting_core_mid_run_loses_nothing(fleet):
    baichuan, core = fleet["baichuan"], fleet["core"]

    def publish(i: int) -> str:
        reply = post(baichuan, "/baichuan/publish", topic=TOPIC, data={"str_info": f"r{i}"},
                     delay=round(random.uniform(0, 3), 3))
        assert reply.ok, reply.text
        return reply.json()["msg_id"]

    def finished() -> int:
        rows = get(baichuan, "/baichuan/topics")["data"]["list"]
        return next(row["finished"] for row in rows if row["topic"] == TOPIC)

    before = finished()
    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(publish, range(400)))
    core.stop()  # graceful SIGTERM while delayed messages keep coming due
    done_while_up = finished() - before
    core.start()
    wait_until(lambda: requests.get(f"{core.url}/healthz", timeout=2).ok, 60)
    # how long the restart took does not matter (a loaded machine slows it): what makes
    # it mid-run is that some messages were done before the stop and some were not
    for msg_id in ids:
        done = get(baichuan, "/baichuan/wait", msg_id=msg_id, timeout=30)
        assert done["status"] == "finished", done
    assert 0 < done_while_up < len(ids)  # the restart really happened mid-run


def test_restarting_a_ruqi_replica_keeps_every_fire(fleet):
    ruqi1, ruqi2 = fleet["ruqi-1"], fleet["ruqi-2"]
    assert post(ruqi2, "/ruqi/add_job", job_trigger="interval", job_id="steady",
                job_name="e2e", cmd=TOPIC + '#{"str_info": "steady"}',
                rule="1s").json()["stat"] == "OK"
    wait_until(lambda: get(ruqi1, "/ruqi/get_history", job_id="steady")["data"]["total"] >= 2,
               20)
    ruqi1.stop()
    ruqi1.start()
    wait_until(lambda: requests.get(f"{ruqi1.url}/healthz", timeout=2).ok, 30)
    total = get(ruqi2, "/ruqi/get_history", job_id="steady")["data"]["total"]
    wait_until(lambda: get(ruqi2, "/ruqi/get_history", job_id="steady")["data"]["total"]
               >= total + 3, 20, what="fires after the restart")
    rows = get(ruqi2, "/ruqi/get_history", job_id="steady", page_index=1,
               page_size=100)["data"]["list"]
    post(ruqi2, "/ruqi/remove_job", job_id="steady")
    times = sorted({r["scheduled_time"] for r in rows})
    assert len(times) == len(rows)  # none doubled
    stamps = [datetime.fromisoformat(t).timestamp() for t in times]
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert gaps and all(abs(g - 1) < 0.01 for g in gaps), times  # none missing
    assert all(r["status"] == "ok" for r in rows), [r["status"] for r in rows]
