"""Where flow types come from: Python plugins (a folder, loaded at start and on an
explicit reload) and declarative JSON types (versioned rows of ``workflow_flow_type``).

A plugin is a ``.py`` file with ``setup(app)`` calling ``app.register_formatter(name,
cls)`` (the original's shape) with ``cls`` a :class:`~.definitions.Workflow` subclass.
Plugins are imported once per load, never per request; ``reload`` in one process bumps a
Redis counter that every other process (and replica) notices on its next sweep tick.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import secrets
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import peewee

from . import plugins as builtin
from .definitions import DefinitionError, TaskSpec, Workflow, spec_from_dict, validate
from .models import FlowType, dumps, loads

log = logging.getLogger("butterfly.xingqiao")
VERSION_KEY = "xq:plugins:version"
NAME_MAX = 64


@dataclass
class PluginSet:
    """The flow types one load found, and the files that failed (file -> error)."""

    types: dict[str, type[Workflow]] = field(default_factory=dict)
    origins: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    #: type -> content hash of its plugin file: the version its new flows record.
    hashes: dict[str, str] = field(default_factory=dict)
    version: int = 0
    _current: str = ""
    _hash: str = ""

    def register_formatter(self, name: str, cls: type[Workflow]) -> None:
        """Called by a plugin's ``setup(app)``: flow type ``name`` is built by ``cls``."""
        if not isinstance(name, str) or not 0 < len(name) <= NAME_MAX:
            raise ValueError(f"flow type name must be 1..{NAME_MAX} chars: {name!r}")
        if not (isinstance(cls, type) and issubclass(cls, Workflow)):
            raise TypeError(f"flow type {name}: {cls!r} is not a Workflow subclass")
        if name in self.types:
            raise ValueError(f"flow type {name} registered twice ({self.origins[name]} "
                             f"and {self._current})")
        self.types[name] = cls
        self.origins[name] = self._current
        self.hashes[name] = self._hash

    register = register_formatter


def _import_file(path: Path) -> Any:
    name = f"butterfly_xingqiao_plugin_{path.stem}_{secrets.token_hex(4)}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        sys.modules.pop(name, None)
    return module


HASH_LEN = 16


def content_hash(module: Any) -> str:
    """The first 16 hex digits of the sha256 of the module's source file: the version of
    every flow type it defines (any edit of the file is a new version)."""
    source = b""
    path = getattr(module, "__file__", None)
    if path:
        try:
            source = Path(path).read_bytes()
        except OSError:
            source = b""
    if not source:
        source = repr(sorted(vars(module))).encode()
    return hashlib.sha256(source).hexdigest()[:HASH_LEN]


def load_plugins(plugin_dir: str | None) -> PluginSet:
    """The built-in demo types, then every ``*.py`` of ``plugin_dir`` (sorted). A file that
    fails to import or register is reported in ``errors`` and skipped; the others load."""
    found = PluginSet()
    modules: list[tuple[str, Any]] = []
    from .plugins import demo

    modules.append((f"{builtin.__name__}.demo", demo))
    if plugin_dir:
        root = Path(plugin_dir)
        if not root.is_dir():
            found.errors[str(root)] = "XINGQIAO_PLUGIN_DIR is not a directory"
        for path in sorted(root.glob("*.py")) if root.is_dir() else []:
            if path.name.startswith("_"):
                continue
            try:
                modules.append((str(path), _import_file(path)))
            except Exception as exc:  # a broken plugin must not stop the others
                found.errors[str(path)] = f"{type(exc).__name__}: {exc}"
    for origin, module in modules:
        setup = getattr(module, "setup", None)
        if not callable(setup):
            found.errors[origin] = "no setup(app) function"
            continue
        found._current = origin
        found._hash = content_hash(module)
        before = dict(found.types)
        try:
            setup(found)
        except Exception as exc:
            found.types, found.origins = before, {k: found.origins[k] for k in before}
            found.hashes = {k: found.hashes[k] for k in before}
            found.errors[origin] = f"{type(exc).__name__}: {exc}"
    for origin, error in found.errors.items():
        log.error("flow type plugin %s not loaded: %s", origin, error)
    return found


_lock = threading.Lock()
_plugins: PluginSet | None = None


def plugins() -> PluginSet:
    """This process's loaded plugins (loaded on first use if setup did not)."""
    global _plugins
    if _plugins is None:
        reload_local()
    assert _plugins is not None
    return _plugins


def reload_local(version: int | None = None) -> PluginSet:
    """Load the plugin folder again in this process."""
    global _plugins
    from butterfly_common.runtime import get_config

    from .config import XingqiaoConfig

    loaded = load_plugins(get_config(XingqiaoConfig).plugin_dir)
    loaded.version = version if version is not None else (_plugins.version if _plugins
                                                          else 0)
    with _lock:
        _plugins = loaded
    return loaded


def reload_everywhere(client: Any) -> PluginSet:
    """Reload here now, and tell every other process through the version counter."""
    version = int(client.incr(VERSION_KEY))
    return reload_local(version)


def follow(client: Any) -> None:
    """Reload when another process asked for it (called each sweep tick)."""
    raw = client.get(VERSION_KEY)
    version = int(raw) if raw else 0
    if version != plugins().version:
        log.info("flow type plugins: reloading (version %d)", version)
        reload_local(version)


# -- declarative (JSON) flow types --------------------------------------------------------

def json_specs(tasks: Any) -> list[TaskSpec]:
    """Parse and validate the ``tasks`` list of a JSON flow type."""
    if not isinstance(tasks, list):
        raise DefinitionError(["tasks must be a list of task objects"])
    errors: list[str] = []
    specs: list[TaskSpec] = []
    for i, raw in enumerate(tasks, 1):
        try:
            specs.append(spec_from_dict(raw, i))
        except DefinitionError as exc:
            errors += exc.errors
        except TypeError as exc:
            errors.append(f"task #{i}: {exc}")
    if errors:
        raise DefinitionError(errors)
    return validate(specs)


def latest_json_type(name: str) -> FlowType | None:
    return (FlowType.select().where(FlowType.name == name)
            .order_by(FlowType.version.desc()).first())


def json_type_version(name: str, version: int) -> FlowType | None:
    return FlowType.get_or_none((FlowType.name == name) & (FlowType.version == version))


def save_json_type(name: str, specs: list[TaskSpec], description: str, operator: str,
                   extra_required: list[str]) -> FlowType:
    """Store a new version of JSON flow type ``name`` (version = newest + 1)."""
    definition = dumps({"tasks": [s.to_dict() for s in specs],
                        "extra_required": extra_required})
    for _ in range(5):
        current = latest_json_type(name)
        version = (current.version if current else 0) + 1
        try:
            return FlowType.create(name=name, version=version, description=description,
                                   definition=definition, operator=operator)
        except peewee.IntegrityError:  # another writer took this version: next one
            continue
    raise RuntimeError(f"could not store a new version of flow type {name}")


def json_type_specs(row: FlowType) -> tuple[list[TaskSpec], list[str]]:
    """The stored tasks and required job_extra names of one JSON type version."""
    body = loads(row.definition, {})
    specs = [TaskSpec(**t) for t in body.get("tasks", [])]
    return specs, list(body.get("extra_required", []))
