"""A project of `butterfly new` joins the compose fleet through its own Dockerfile and
compose override, as its README says: served on its port, its handler a topic that the
fleet's baichuan accepts, ruqi schedules and xingqiao puts in a flow, listed by canghai."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from compose_fleet import ComposeFleet, running_fleet

from butterfly_common.testing import wait_until

PORT = 8600
TOPIC = "/demo_shop/greet"


@pytest.fixture(scope="module")
def fleet(docker_engine: object, env_file: Path, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[ComposeFleet]:
    where = tmp_path_factory.mktemp("own")
    subprocess.run([sys.executable, "-m", "butterfly_common.cli", "new", "demo_shop"],
                   cwd=where, check=True, capture_output=True, timeout=60)
    project = where / "demo_shop"
    yield from running_fleet(
        "compose.yml", "bftest-own", env_file, "own project",
        extra_files=[project / "compose.override.yml"], env={"DEMO_SHOP_DIR": str(project)})


def test_the_project_is_served_beside_the_fleet(fleet):
    (shop,) = fleet.containers("demo_shop")
    assert shop["State"]["Health"]["Status"] == "healthy"
    assert fleet.get(PORT, "/demo_shop/greet", name="http") == {
        "stat": "OK", "greeting": "hello, http"}


def test_its_topic_through_baichuan_ruqi_and_xingqiao(fleet):
    msg_id = fleet.publish(TOPIC, {"name": "baichuan"})
    done = fleet.get(4300, "/baichuan/wait", msg_id=msg_id, timeout=20)
    assert done["result"] == {"stat": "OK", "greeting": "hello, baichuan"}
    assert done["worker"].startswith("demo_shop:")

    fleet.fires("shop", TOPIC + '#{"name": "ruqi"}')

    flow = fleet.post(4700, "/xingqiao/flow_type_create", name="shop_flow",
                      extra_required=["name"],
                      tasks=[{"label": "greet", "cmd": TOPIC, "requires": ["name"],
                              "provides": ["greeting"]}])
    assert flow["stat"] == "OK", flow
    job = fleet.post(4700, "/xingqiao/create_job", job_namespace="shop", job_type="shop_flow",
                     job_extra={"name": "xingqiao"})
    assert job["stat"] == "OK", job
    assert fleet.flow_ended(job["data"]["job_id"])["job_status"] == "finished"


def test_canghai_lists_the_project_its_routes_and_traffic(fleet):
    """The project is in no fleet file: canghai finds it by its announcement in Redis and
    reaches it at the compose service name the override announces."""
    for _ in range(3):
        assert fleet.get(PORT, "/demo_shop/greet", name="traffic")["stat"] == "OK"

    def shop() -> dict[str, Any] | None:
        reply = requests.get(fleet.url(4400, "/canghai/service_list"), params={"minutes": 60},
                             headers=fleet.admin, timeout=30).json()
        assert reply["stat"] == "OK", reply
        found = [s for s in reply["data"]["services"] if s["name"] == "demo_shop"]
        ready = found and found[0]["calls"] >= 3 and any(
            i["state"] == "ready" for i in found[0]["instances"])
        return found[0] if ready else None

    listed = wait_until(shop, 150, interval=2, what="canghai lists demo_shop with traffic")
    assert listed["announced"] is True
    assert listed["instances"][0]["url"] == f"http://demo_shop:{PORT}"
    assert {"/demo_shop/greet", "/demo_shop/add"} <= {r["path"] for r in listed["routes"]}
