"""The cluster profile, deploy/compose.cluster.yml: the same fleet on a 3-node Redis Cluster
(``redis+cluster://``) instead of Twemproxy, up and healthy, with a queued call, a flow and a
scheduled fire whose keys spread over the nodes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from compose_fleet import ComposeFleet, timed
from conftest import start_fleet

from butterfly_common.testing import wait_until

TOPIC = "/demo_api/hello"
NODES = ("redis-node-1", "redis-node-2", "redis-node-3")


@pytest.fixture(scope="module")
def fleet(docker_engine: object, env_file: Path) -> Iterator[ComposeFleet]:
    fleet = start_fleet("compose.cluster.yml", "bftest-cluster", env_file, "cluster")
    try:
        yield fleet
    finally:
        with timed("cluster: down -v"):
            fleet.down()


def redis_cli(fleet: ComposeFleet, node: str, *args: str) -> str:
    return fleet.compose("exec", "-T", node, "redis-cli", *args).stdout


def test_the_cluster_is_formed_and_the_fleet_healthy(fleet):
    info = redis_cli(fleet, "redis-node-1", "cluster", "info")
    assert "cluster_state:ok" in info and "cluster_known_nodes:3" in info
    assert fleet.not_ready() == []
    assert "redis+cluster://" in fleet.compose("config").stdout
    assert "twemproxy" not in fleet.services()


def test_queue_flow_and_schedule_run_on_the_cluster(fleet):
    msg_id = fleet.publish(TOPIC, {"str_info": "on the cluster"})
    done = fleet.get(4300, "/baichuan/wait", msg_id=msg_id, timeout=20)
    assert (done["status"], done["result"]["str_info"]) == ("finished", "on the cluster")

    job = fleet.post(4700, "/xingqiao/create_job", job_namespace="demo", job_type="hello",
                     job_extra={"str_info": "cluster flow"})
    assert job["stat"] == "OK", job
    detail = wait_until(
        lambda: d if (d := fleet.get(4700, "/xingqiao/get_job_detail",
                                     job_id=job["data"]["job_id"])["data"])["job_status"]
        in ("finished", "failed") else None, 60, interval=0.5, what="the flow ended")
    assert (detail["job_status"], detail["ret_stat"]) == ("finished", "OK")

    added = fleet.post(4100, "/ruqi/add_job", job_trigger="interval", job_id="tick",
                       job_name="cluster", rule="1s", cmd=TOPIC + '#{"str_info": "t"}')
    assert added["stat"] == "OK", added
    wait_until(lambda: any(r["status"] == "ok" for r in fleet.get(
        4101, "/ruqi/get_history", job_id="tick", page_size=20)["data"]["list"]),
        60, interval=0.5, what="a fire recorded")
    assert fleet.post(4100, "/ruqi/remove_job", job_id="tick")["stat"] == "OK"

    # the fleet's keys live on more than one node: the cluster really shards them
    holding = [n for n in NODES if int(redis_cli(fleet, n, "dbsize").strip() or 0) > 0]
    assert len(holding) >= 2, holding
