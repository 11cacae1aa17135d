"""Every third-party dependency is locked to one version with its hashes, and the venv
`make install` built is exactly the lock (requirements/*.lock, from scripts/lock-deps)."""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+) \\$")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _lock(name: str) -> dict[str, tuple[str, int]]:
    """``{package: (version, number of sha256 hashes)}`` of one lock file."""
    pins: dict[str, tuple[str, int]] = {}
    current = None
    for line in (ROOT / "requirements" / f"{name}.lock").read_text().splitlines():
        if match := PIN.match(line):
            current = _norm(match[1])
            pins[current] = (match[2], 0)
        elif line.strip().startswith("--hash=sha256:") and current:
            pins[current] = (pins[current][0], pins[current][1] + 1)
        elif line and not line.startswith((" ", "#")):
            raise AssertionError(f"{name}.lock: unexpected line {line!r}")
    return pins


def _requirement_names(specs: list[str]) -> set[str]:
    return {_norm(re.split(r"[<>=!~\[; ]", spec, maxsplit=1)[0]) for spec in specs}


def test_every_dependency_is_pinned_with_hashes():
    runtime, dev = _lock("runtime"), _lock("dev")
    assert runtime and all(hashes >= 1 for _, hashes in [*runtime.values(), *dev.values()])
    wanted: set[str] = set()
    for pyproject in [ROOT / "libs/butterfly_common/pyproject.toml",
                      *sorted(ROOT.glob("services/*/pyproject.toml"))]:
        project = tomllib.loads(pyproject.read_text())["project"]
        wanted |= _requirement_names(project.get("dependencies", []))
    wanted = {n for n in wanted if not n.startswith("butterfly-")}
    assert wanted - set(runtime) == set()
    assert all(dev[name] == runtime[name] for name in runtime)  # one version everywhere
    tools = [line for line in (ROOT / "requirements/dev.in").read_text().splitlines()
             if line and not line.startswith(("-", "#"))]
    assert _requirement_names(tools) - set(dev) == set()


def test_the_venv_is_exactly_the_dev_lock():
    wrong = {}
    for name, (pinned, _) in _lock("dev").items():
        try:
            installed = version(name)
        except PackageNotFoundError:
            installed = None
        if installed != pinned:
            wrong[name] = (pinned, installed)
    assert wrong == {}
