"""The container test's shared pieces: a Docker engine, the stand-in base images, fresh
compose secrets, and a table of how long each phase took at the end of the run."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import standins
from compose_fleet import ROOT, TIMINGS, timed
from docker_host import DockerHost


@pytest.fixture(scope="session")
def docker_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockerHost]:
    host = DockerHost(tmp_path_factory.mktemp("dockerd") / "dockerd.log")
    with timed("engine: installed and answering"):
        host.start()
    try:
        with timed("base images (stand-ins built when missing)"):
            built = standins.ensure()
        TIMINGS["base images built this run"] = len(built)
        yield host
    finally:
        host.stop()


@pytest.fixture(scope="session")
def env_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Fresh secrets from the same script `make compose-env` runs."""
    path = tmp_path_factory.mktemp("compose") / ".env"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "compose_env.py"), str(path)],
                   check=True, capture_output=True, timeout=30)
    return path


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if TIMINGS:
        terminalreporter.section("container test timings (s)")
        for name, seconds in TIMINGS.items():
            terminalreporter.write_line(f"{seconds:>8}  {name}")
