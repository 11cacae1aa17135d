#!/usr/bin/env python3
"""Keep docs/configuration.md in step with the declared settings.

The declarations (``butterfly_common.settings.Settings`` and each installed service's
``config``, see ``butterfly_common.config``) are the one source of the variables and their
defaults; the page adds the prose. This script rewrites the default column of every row
that names declared variables, from the declaration, and appends a row (default and help
from the declaration) for a declared variable the page does not list yet, at the end of
its section's table. ``--check`` changes nothing and exits 1 when the page is stale, as
``make compose-check`` does for the compose files.

A default the declaration cannot spell (empty, None, computed from the environment, or
BUTTERFLY_PORT's "the service's port") stays as the page words it.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from butterfly_common.config import Config
from butterfly_common.service import installed_services
from butterfly_common.settings import Settings
from butterfly_common.tracing import TracingConfig

PAGE = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"
#: Defaults that depend on something besides the declaration (``load_settings``'s port).
WORDED = frozenset({"BUTTERFLY_PORT"})
_ROW = re.compile(r"^\| (?P<names>[^|]+) \| (?P<default>[^|]*) \| (?P<rest>.*)$")
_NAME = re.compile(r"`([A-Z][A-Z0-9_]+)`")


class Declared:
    """One declared variable: what the page's default column should say, if anything."""

    def __init__(self, env: str, default: Any, computed: bool, help_text: str) -> None:
        self.env = env
        self.help = help_text
        self.literal = None if computed or env in WORDED else _literal(default)

    def cell(self) -> str:
        return f"`{self.literal}`" if self.literal is not None else "unset"


def _literal(default: Any) -> str | None:
    """``60.0`` -> ``60``, ``False`` -> ``0``; None for an empty default (worded on the page)."""
    if default is None or default == "" or default == ():
        return None
    if isinstance(default, bool):
        return "1" if default else "0"
    if isinstance(default, float):
        return f"{default:g}"
    return str(default)


def declared() -> dict[str, list[Declared]]:
    """``{section key: [Declared...]}``: ``butterfly`` for the framework, then each service."""
    out: dict[str, list[Declared]] = {"butterfly": list(_of(Settings)),
                                      "tracing": list(_of(TracingConfig))}
    for name, service in installed_services().items():
        if isinstance(service.config, type) and issubclass(service.config, Config):
            out[name] = list(_of(service.config))
    return out


def _of(cls: type[Config]) -> Iterator[Declared]:
    for f, spec in cls.settings():
        yield Declared(spec.env, f.default, spec.env_default is not None, spec.help)


def _section_of(heading: str, keys: list[str]) -> str | None:
    low = heading.lower()
    if "framework" in low:
        return "butterfly"
    return next((k for k in keys if k != "butterfly" and re.search(rf"\b{k}\b", low)), None)


def render(text: str, decl: dict[str, list[Declared]]) -> tuple[str, list[str]]:
    """The page with its defaults from the declarations; also what changed, for --check."""
    by_env = {d.env: d for ds in decl.values() for d in ds}
    lines = text.split("\n")
    listed: set[str] = set()
    changes: list[str] = []
    last_row: dict[str, int] = {}
    section: str | None = None
    for i, line in enumerate(lines):
        if line.startswith("#"):
            section = _section_of(line, list(decl))
            continue
        match = _ROW.match(line)
        if not match:
            continue
        names = _NAME.findall(match["names"])
        if section is not None:
            last_row[section] = i
        mine = [by_env[n] for n in names if n in by_env]
        listed.update(n for n in names if n in by_env)
        if not mine or len(mine) != len(names) or any(d.literal is None for d in mine):
            continue
        default = " / ".join(d.cell() for d in mine)
        if match["default"] != default:
            changes.append(f"{' / '.join(names)}: default {match['default']!r} -> {default!r}")
            lines[i] = f"| {match['names']} | {default} | {match['rest']}"
    added: dict[int, list[str]] = {}
    for key, ds in decl.items():
        for d in ds:
            if d.env in listed:
                continue
            if key not in last_row:
                changes.append(f"{d.env}: no table for {key} on the page")
                continue
            changes.append(f"{d.env}: declared but not on the page (row added)")
            added.setdefault(last_row[key], []).append(f"| `{d.env}` | {d.cell()} | {d.help} |")
    for index in sorted(added, reverse=True):
        lines[index + 1:index + 1] = added[index]
    return "\n".join(lines), changes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="change nothing; exit 1 when docs/configuration.md is stale")
    parser.add_argument("--page", type=Path, default=PAGE)
    args = parser.parse_args(argv)
    text = args.page.read_text(encoding="utf-8")
    new, changes = render(text, declared())
    if args.check:
        for change in changes:
            print(f"{args.page.name}: {change}", file=sys.stderr)
        if new != text or changes:
            print("stale: run scripts/gen_settings_docs.py", file=sys.stderr)
            return 1
        return 0
    if new != text:
        args.page.write_text(new, encoding="utf-8")
    for change in changes:
        print(change)
    return 0


if __name__ == "__main__":
    sys.exit(main())
