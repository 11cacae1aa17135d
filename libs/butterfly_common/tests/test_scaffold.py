"""``butterfly new``: what it writes and what it refuses; ``butterfly serve --reload``.
(tests/dist installs a scaffolded project from the built wheel and runs it.)"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import tomllib

import pytest
import requests

from butterfly_common.scaffold import FLEET_PORTS, ScaffoldError, new_project
from butterfly_common.testing import free_port, wait_until


def test_a_new_project_is_a_package_with_its_service_app_tests_and_image(tmp_path):
    folder = new_project("demo_shop", tmp_path, port=8610)
    files = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    assert files == {
        ".gitignore", "Dockerfile", "README.md", "compose.override.yml", "pyproject.toml",
        "src/demo_shop/__init__.py", "src/demo_shop/handlers/__init__.py",
        "src/demo_shop/handlers/demo_shop/__init__.py", "tests/test_demo_shop.py"}
    meta = tomllib.loads((folder / "pyproject.toml").read_text())
    assert meta["project"]["name"] == "demo-shop"
    assert meta["project"]["entry-points"]["butterfly.services"] == {
        "demo_shop": "demo_shop:service"}
    for path in folder.rglob("*.py"):
        ast.parse(path.read_text(), str(path))  # valid Python, every placeholder filled
    text = "".join(p.read_text() for p in folder.rglob("*") if p.is_file())
    assert "{{" not in text and "8610" in text


@pytest.mark.parametrize(("name", "reason"), [
    ("Shop", "not a valid name"), ("1shop", "not a valid name"), ("a", "not a valid name"),
    ("shop-x", "not a valid name"), ("class", "a Python keyword"), ("json", "is taken"),
    ("butterfly_shop", "is taken"),
])
def test_bad_names_are_refused_in_one_line(tmp_path, name, reason):
    with pytest.raises(ScaffoldError, match=reason):
        new_project(name, tmp_path)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("port", [80, 70000, *sorted(FLEET_PORTS)])
def test_ports_of_the_fleet_or_out_of_range_are_refused(tmp_path, port):
    with pytest.raises(ScaffoldError, match=f"port {port} is not free"):
        new_project("shop", tmp_path, port=port)


def test_an_existing_folder_is_refused_and_left_alone(tmp_path):
    (tmp_path / "shop").mkdir()
    (tmp_path / "shop" / "mine.txt").write_text("keep")
    result = subprocess.run([sys.executable, "-m", "butterfly_common.cli", "new", "shop"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr == "butterfly new: shop exists: pick another name or folder\n"
    assert [p.name for p in (tmp_path / "shop").iterdir()] == ["mine.txt"]


HANDLER = '''from butterfly_common import api


@api
def version(req):
    return "OK", {{"version": {version}}}
'''


def test_serve_reload_restarts_workers_when_the_code_changes(tmp_path, redis_server):
    package = tmp_path / "reloading"
    (package / "handlers" / "app").mkdir(parents=True)
    (package / "__init__.py").write_text(
        "from butterfly_common.service import Service\n"
        "service = Service(name='reloading', port=8611, handlers='reloading.handlers')\n")
    (package / "handlers" / "__init__.py").write_text("")
    handler = package / "handlers" / "app" / "__init__.py"
    handler.write_text(HANDLER.format(version=1))
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "BUTTERFLY_PORT": str(port),
           "BUTTERFLY_WORKERS": "1", "BUTTERFLY_REDIS_URL": redis_server.url,
           "BUTTERFLY_LOG_DIR": str(tmp_path / "log")}
    server = subprocess.Popen([sys.executable, "-m", "butterfly_common.cli", "serve",
                               "reloading:service", "--reload"], cwd=tmp_path, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/app/version"

    def answered() -> int | None:
        return requests.get(url, timeout=2).json().get("version")

    try:
        assert wait_until(answered, 60, interval=0.2, what="serving") == 1

        def edited() -> bool:
            # gunicorn's reloader takes a file's first mtime it sees as the baseline, up to
            # a second after the worker imported it: an edit inside that second would be
            # the baseline, so the edit is saved again until the new code answers
            handler.write_text(HANDLER.format(version=2))
            return answered() == 2

        assert wait_until(edited, 60, interval=0.5, what="reloaded")
    finally:
        server.terminate()
        server.wait(timeout=60)
