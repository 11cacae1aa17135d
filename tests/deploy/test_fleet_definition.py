"""One fleet definition: compose and `make run` list the same services, commands, ports."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from butterfly_common.service import installed_services
from butterfly_common.testing import RedisServer

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

import fleet  # noqa: E402
import gen_compose  # noqa: E402
from fleetdef import load_fleet  # noqa: E402


def test_fleet_lists_every_installed_service():
    assert {inst.service for inst in load_fleet()} == set(installed_services())


def test_compose_is_generated_from_the_fleet():
    committed = (ROOT / "deploy" / "compose.yml").read_text(encoding="utf-8")
    assert committed == gen_compose.render(), "run `make compose`"


def test_compose_and_local_fleet_agree(tmp_path):
    compose = yaml.safe_load((ROOT / "deploy" / "compose.yml").read_text(encoding="utf-8"))
    with RedisServer() as redis_server:
        env = {"BUTTERFLY_REDIS_URL": redis_server.url}
        url, redis_child = fleet.choose_redis(env, env, tmp_path)
    assert (url, redis_child) == (redis_server.url, None)  # a Redis answered: none started
    local = {child.name: child for child in fleet.service_children(load_fleet(), env)}
    for inst in load_fleet():
        service = compose["services"][inst.name]
        assert service["command"] == inst.argv == ["butterfly", "serve", inst.service]
        assert service["ports"] == [f"{inst.port}:{inst.port}"]
        assert service["environment"]["BUTTERFLY_PORT"] == str(inst.port)
        assert service["healthcheck"]["test"][-1] == str(inst.port)
        child = local[inst.name]
        assert child.env["BUTTERFLY_PORT"] == str(inst.port)
        assert child.argv[1:] == ["serve", inst.service]
        assert child.argv[0].endswith("/butterfly")
        for key, value in inst.env.items():
            assert service["environment"][key] == value == child.env[key]


def test_compose_validates_with_docker_compose():
    assert shutil.which("docker-compose"), "make system-deps installs docker-compose"
    result = subprocess.run(["docker-compose", "-f", str(ROOT / "deploy" / "compose.yml"),
                             "config", "-q"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
