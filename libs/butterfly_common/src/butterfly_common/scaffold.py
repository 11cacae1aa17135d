"""``butterfly new <name>``: a project of one's own, outside this repository.

The project is an installable package with a ``butterfly.services`` entry point, so
``butterfly serve <name>`` and the fleet find it the way they find the built-in services.
Its files come from ``project_template/`` beside this module: each ``*.tmpl`` is copied
without the suffix, with ``__name__`` in a path, a leading ``dot-`` (``.gitignore``) and
``{{key}}`` in a text replaced.
"""

from __future__ import annotations

import keyword
import re
from importlib.metadata import version
from importlib.util import find_spec
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parent / "project_template"
NAME = re.compile(r"[a-z][a-z0-9_]{1,39}")
DEFAULT_PORT = 8600
#: the built-in fleet's ports (deploy/fleet.toml): a new service should not collide
FLEET_PORTS = frozenset({8585, 4100, 4101, 4200, 4300, 4400, 4700, 4701})


class ScaffoldError(ValueError):
    """A name, port or folder ``butterfly new`` refuses; its text is the one line to print."""


def check_name(name: str) -> None:
    """A service name is also its Python package, its app and its topics' first part."""
    if not NAME.fullmatch(name):
        raise ScaffoldError(f"{name!r} is not a valid name: 2-40 characters, lower-case "
                            "letters, digits and _, starting with a letter")
    if keyword.iskeyword(name):
        raise ScaffoldError(f"{name!r} is a Python keyword")


def check_free(name: str) -> None:
    """The package must not shadow, or be shadowed by, one already importable."""
    if name.startswith("butterfly") or find_spec(name) is not None:
        raise ScaffoldError(f"{name!r} is taken: a module of that name is already importable")


def framework_source() -> Path | None:
    """The framework's source folder when it runs from a checkout (an editable install),
    else None: butterfly-common is not on PyPI, so a new venv installs it from there."""
    package = Path(__file__).resolve().parent
    source = package.parent.parent  # libs/butterfly_common/src/butterfly_common
    return source if (source / "pyproject.toml").exists() and package.parent.name == "src" \
        else None


def next_steps(folder: Path) -> list[str]:
    """What to type after ``butterfly new``, framework first."""
    source = framework_source()
    framework = (f"pip install -e {source}" if source else
                 "pip install butterfly-common  # from your index, or make dist's wheel")
    return [f"cd {folder}", "python3 -m venv .venv && . .venv/bin/activate", framework,
            "pip install -e '.[test]'", "pytest", f"butterfly serve {folder.name} --reload"]


def new_project(name: str, parent: Path, port: int = DEFAULT_PORT) -> Path:
    """Write the project ``parent/name``; returns its folder. Refuses (ScaffoldError) a
    bad name, a port of the built-in fleet, or a folder that exists."""
    check_name(name)
    if not 1024 <= port <= 65535 or port in FLEET_PORTS:
        raise ScaffoldError(f"port {port} is not free for a new service: pick one in "
                            "1024-65535 outside the fleet's "
                            f"({', '.join(map(str, sorted(FLEET_PORTS)))})")
    target = parent / name
    if target.exists():
        raise ScaffoldError(f"{target} exists: pick another name or folder")
    check_free(name)
    values = {"name": name, "NAME": name.upper(), "dist": name.replace("_", "-"),
              "port": str(port),
              "framework_version": version("butterfly-common")}
    for source in sorted(TEMPLATE.rglob("*.tmpl")):
        relative = source.relative_to(TEMPLATE).as_posix().replace("__name__", name)
        relative = relative.removesuffix(".tmpl").replace("dot-", ".")
        text = source.read_text(encoding="utf-8")
        for key, value in values.items():
            text = text.replace("{{" + key + "}}", value)
        path = target / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return target
