"""One fleet definition: compose (both profiles) and `make run` list the same services,
commands, ports; compose refuses to start without its secrets, and `make compose-env`'s
script writes them."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from butterfly_common.service import installed_services
from butterfly_common.testing import RedisServer

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

import compose_env  # noqa: E402
import fleet  # noqa: E402
import gen_compose  # noqa: E402
from fleetdef import load_fleet, load_workers  # noqa: E402

FILES = list(gen_compose.PROFILES)
SECRETS = {name: f"test-{name.lower()}" for name in compose_env.SECRETS}


def compose_config(file: str, env: dict[str, str],
                   tmp: Path) -> subprocess.CompletedProcess[str]:
    """``docker-compose config`` of ``file`` with exactly these BUTTERFLY_* settings (no
    .env beside it is read: --env-file names an empty one)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("BUTTERFLY_")}
    empty = tmp / "empty.env"
    empty.touch()
    return subprocess.run(["docker-compose", "--env-file", str(empty), "-f",
                           str(ROOT / "deploy" / file), "config", "-q"],
                          capture_output=True, text=True, timeout=60, env={**base, **env})


def test_fleet_lists_every_installed_service():
    assert {inst.service for inst in load_fleet()} == set(installed_services())


@pytest.mark.parametrize("file", FILES)
def test_compose_is_generated_from_the_fleet(file):
    committed = (ROOT / "deploy" / file).read_text(encoding="utf-8")
    assert committed == gen_compose.render(file), "run `make compose`"


@pytest.mark.parametrize("file", FILES)
def test_compose_and_local_fleet_agree(tmp_path, file):
    compose = yaml.safe_load((ROOT / "deploy" / file).read_text(encoding="utf-8"))
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


@pytest.mark.parametrize("file", FILES)
def test_worker_services_scale_without_ports(file):
    compose = yaml.safe_load((ROOT / "deploy" / file).read_text(encoding="utf-8"))
    workers = load_workers()
    assert [w.name for w in workers] == ["core-worker"]
    for worker in workers:
        service = compose["services"][worker.name]
        assert service["command"] == ["butterfly", "worker", worker.service]
        assert "ports" not in service and "container_name" not in service
        assert service["healthcheck"]["test"] == ["CMD", "butterfly", "healthcheck", "--worker"]


def test_the_profiles_differ_only_in_the_redis_tier():
    twemproxy, cluster = (yaml.safe_load((ROOT / "deploy" / f).read_text(encoding="utf-8"))
                          for f in FILES)
    assert "twemproxy" in twemproxy["services"] and "twemproxy" not in cluster["services"]
    assert {f"redis-node-{n}" for n in (1, 2, 3)} <= set(cluster["services"])
    for name, service in cluster["services"].items():
        if "butterfly" in service.get("command", []):
            assert service["environment"]["BUTTERFLY_REDIS_URL"].startswith("redis+cluster://")
            assert "redis-cluster" in service["depends_on"]
            twin = twemproxy["services"][name]
            assert {k: v for k, v in twin["environment"].items() if k != "BUTTERFLY_REDIS_URL"
                    } == {k: v for k, v in service["environment"].items()
                          if k != "BUTTERFLY_REDIS_URL"}


@pytest.mark.parametrize("file", FILES)
def test_compose_validates_with_docker_compose(file, tmp_path):
    assert shutil.which("docker-compose"), "make system-deps installs docker-compose"
    result = compose_config(file, SECRETS, tmp_path)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("missing", sorted(SECRETS))
def test_a_missing_secret_stops_compose_with_a_line_naming_it(missing, tmp_path):
    result = compose_config("compose.yml", {k: v for k, v in SECRETS.items() if k != missing},
                            tmp_path)
    assert result.returncode != 0
    assert f"{missing} is unset - run make compose-env" in result.stderr


def test_compose_env_writes_each_secret_once_and_privately(tmp_path, monkeypatch):
    for name in SECRETS:
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / ".env"
    path.write_text("BUTTERFLY_TRUSTED_PROXIES=10.0.0.1\nBUTTERFLY_ADMIN_TOKEN=mine", "utf-8")
    path.chmod(0o600)
    assert compose_env.main(path) == 0
    first = dict(line.split("=", 1) for line in path.read_text("utf-8").split())
    assert first["BUTTERFLY_ADMIN_TOKEN"] == "mine"  # kept
    assert first["BUTTERFLY_TRUSTED_PROXIES"] == "10.0.0.1"
    assert len(first["BUTTERFLY_SECRET_KEY"]) == 64 and len(first["BUTTERFLY_DB_PASSWORD"]) == 32
    assert compose_env.main(path) == 0
    assert dict(line.split("=", 1) for line in path.read_text("utf-8").split()) == first
    fresh = tmp_path / "new.env"
    assert compose_env.main(fresh) == 0
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o600
    assert set(compose_env.present(fresh)) == set(SECRETS)
