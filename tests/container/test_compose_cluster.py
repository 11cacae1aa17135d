"""The cluster profile, deploy/compose.cluster.yml: the same fleet on a 3-node Redis Cluster
(``redis+cluster://``) instead of Twemproxy, up and healthy, with a queued call, a flow and a
scheduled fire whose keys spread over the nodes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from compose_fleet import ComposeFleet, running_fleet

TOPIC = "/demo_api/hello"
NODES = ("redis-node-1", "redis-node-2", "redis-node-3")


@pytest.fixture(scope="module")
def fleet(docker_engine: object, env_file: Path) -> Iterator[ComposeFleet]:
    yield from running_fleet("compose.cluster.yml", "bftest-cluster", env_file, "cluster")


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
    detail = fleet.flow_ended(job["data"]["job_id"])
    assert (detail["job_status"], detail["ret_stat"]) == ("finished", "OK")

    fleet.fires("tick", TOPIC + '#{"str_info": "t"}', history_port=4101)

    # the fleet's keys live on more than one node: the cluster really shards them
    holding = [n for n in NODES if int(redis_cli(fleet, n, "dbsize").strip() or 0) > 0]
    assert len(holding) >= 2, holding
