"""A team's own project, outside this repository: the framework installed from its built
wheel into a fresh venv in a temporary folder (no editable install, the repo not on
sys.path), ``butterfly new demo_shop``, the project installed and its own tests run, then
served by ``butterfly serve`` and called over HTTP and through the queue."""

from __future__ import annotations

import email
import json
import os
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from butterfly_common.testing import RedisServer, free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]


def clean_env(**extra: str) -> dict[str, str]:
    """The machine's environment without this repo's venv, settings or Python path."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("BUTTERFLY_", "PYTHON", "VIRTUAL_ENV"))}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                  if not p.startswith(str(ROOT)))
    return {**env, **extra}


def run(args: list[str], cwd: Path, timeout: float = 600, **env: str
        ) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(args, cwd=cwd, env=clean_env(**env), capture_output=True,
                            text=True, timeout=timeout)
    assert result.returncode == 0, f"{args}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


PACKAGES = ["butterfly_common", "butterfly_core", "butterfly_baichuan", "butterfly_canghai",
            "butterfly_ruqi", "butterfly_wuxing", "butterfly_xingqiao"]


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What ``make dist`` builds: a wheel and an sdist of the framework and every service."""
    out = tmp_path_factory.mktemp("dist")
    run(["make", "--no-print-directory", "dist", f"DIST={out}"], cwd=ROOT, timeout=900)
    return out


@pytest.fixture(scope="module")
def outside(tmp_path_factory: pytest.TempPathFactory, dist: Path) -> Iterator[Path]:
    """A folder outside the repo with a venv holding the framework's wheel from make dist."""
    work = tmp_path_factory.mktemp("own-project")
    assert not work.resolve().is_relative_to(ROOT)
    (wheel,) = dist.glob("butterfly_common-*.whl")
    run([sys.executable, "-m", "venv", str(work / "venv")], cwd=work)
    run([str(work / "venv" / "bin" / "pip"), "install", "--quiet", str(wheel)], cwd=work)
    yield work


@pytest.mark.parametrize("package", PACKAGES)
def test_each_package_has_complete_metadata(dist: Path, package: str) -> None:
    (wheel,) = dist.glob(f"{package}-*.whl")
    (sdist,) = dist.glob(f"{package}-*.tar.gz")
    with zipfile.ZipFile(wheel) as whl:
        names = whl.namelist()
        (meta_name,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        meta = email.message_from_bytes(whl.read(meta_name))
    assert meta["License-Expression"] and meta.get_all("License-File") == ["LICENSE"]
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert f"{package}/py.typed" in names, "type hints are shipped (PEP 561)"
    classifiers = meta.get_all("Classifier")
    assert "Typing :: Typed" in classifiers
    assert "Programming Language :: Python :: 3.11" in classifiers
    assert meta["Requires-Python"] == ">=3.11" and meta["Keywords"]
    assert meta["Description-Content-Type"] == "text/markdown"
    assert meta.get_payload().startswith(f"# {package.replace('_', '-')}")
    with tarfile.open(sdist) as tar:
        members = {Path(m.name).name for m in tar.getmembers() if m.isfile()}
    assert {"LICENSE", "README.md", "pyproject.toml"} <= members


def test_the_wheel_is_installed_not_linked(outside):
    venv_python = str(outside / "venv" / "bin" / "python")
    where = run([venv_python, "-c", "import butterfly_common, sys; "
                 "print(butterfly_common.__file__); print(sys.path)"], cwd=outside).stdout
    assert "site-packages" in where.splitlines()[0]
    assert str(ROOT) not in where


def test_new_project_installs_passes_its_tests_and_serves(outside):
    bin_dir = outside / "venv" / "bin"
    created = run([str(bin_dir / "butterfly"), "new", "demo_shop"], cwd=outside).stdout
    assert created.startswith("created demo_shop: the service demo_shop on port 8600")
    project = outside / "demo_shop"
    refused = subprocess.run([str(bin_dir / "butterfly"), "new", "demo_shop"], cwd=outside,
                             env=clean_env(), capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines() == [
        "butterfly new: demo_shop exists: pick another name or folder"]
    run([str(bin_dir / "pip"), "install", "--quiet", f"{project}[test]"], cwd=outside)
    tests = run([str(bin_dir / "pytest"), "-q", "-p", "no:cacheprovider"], cwd=project)
    assert "3 passed" in tests.stdout


    port = free_port()
    with RedisServer() as redis_server:
        env = {"BUTTERFLY_REDIS_URL": redis_server.url, "BUTTERFLY_PORT": str(port),
               "BUTTERFLY_HOST": "127.0.0.1", "BUTTERFLY_WORKERS": "1",
               "BUTTERFLY_CONSUME": "1", "BUTTERFLY_LOG_DIR": str(outside / "log")}
        server = subprocess.Popen([str(bin_dir / "butterfly"), "serve", "demo_shop"],
                                  cwd=outside, env=clean_env(**env),
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            url = f"http://127.0.0.1:{port}"
            wait_until(lambda: requests.get(f"{url}/readyz", timeout=2).ok, 60,
                       interval=0.2, what="demo_shop serving")
            reply = requests.get(f"{url}/demo_shop/greet", params={"name": "http"}, timeout=10)
            assert reply.json() == {"stat": "OK", "greeting": "hello, http"}
            routes = run([str(bin_dir / "butterfly"), "routes", "demo_shop"], cwd=outside,
                         **env).stdout
            assert "/demo_shop/greet" in routes and "/demo_shop/add" in routes
            called = run([str(bin_dir / "butterfly"), "call", "/demo_shop/add", "2", "3"],
                         cwd=outside, **env).stdout
            assert "('OK', {'sum': 5})" in called.splitlines()[-2], called[-500:]
            published = run([str(bin_dir / "butterfly"), "publish", "/demo_shop/greet",
                             '{"name": "queue"}', "--wait"], cwd=outside, **env)
            done = json.loads(published.stdout.splitlines()[-1])
            assert done["status"] == "finished"
            assert done["result"] == {"stat": "OK", "greeting": "hello, queue"}
        finally:
            server.terminate()
            assert server.wait(timeout=60) == 0
