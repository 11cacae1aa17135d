"""The protocol's Lua scripts, loaded once, and how to run them inside a pipeline.

Each ``.lua`` file beside this module is one state change. The parts of the prelude
(server time, record helpers, the field order, priorities, dedup; ``_prelude.lua``) that
a script uses are prepended to it, so scripts stay short and agree on the record layout,
and none pays on every call for definitions it never calls (a complete, the commonest
call, once built the whole publish path). Scripts run by EVALSHA with EVAL fallback
(:class:`Script`), never ``SCRIPT LOAD``: Twemproxy rejects it.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from functools import cache
from importlib import resources
from typing import Any

from redis.exceptions import NoScriptError

from ..redis_client import Script
from .keys import FIELDS

_PKG = __package__ or "butterfly_common.mq"


def _read(name: str) -> str:
    return resources.files(_PKG).joinpath(name).read_text(encoding="utf-8")


_DEFINES = re.compile(r"^local (?:function )?(\w+)", re.M)


@cache
def prelude_parts() -> tuple[tuple[frozenset[str], str], ...]:
    """The prelude as ``(names defined, text)`` parts, in order: the FIELDS table, then
    ``_prelude.lua`` cut at blank lines (a part of comments only goes with the next)."""
    fields = ", ".join(f"'{f}'" for f in FIELDS)
    parts = [(frozenset({"FIELDS"}), f"local FIELDS = {{{fields}}}\n")]
    pending = ""
    for chunk in _read("_prelude.lua").split("\n\n"):
        text = pending + chunk.strip("\n") + "\n"
        names = frozenset(_DEFINES.findall(text))
        if names:
            parts.append((names, text))
            pending = ""
        else:
            pending = text
    return tuple(parts)


def prelude_for(body: str) -> str:
    """The prelude parts ``body`` uses, with the parts those use, in prelude order."""
    parts = prelude_parts()
    used = _words(body)
    wanted: set[int] = set()
    grew = True
    while grew:
        grew = False
        for i, (names, text) in enumerate(parts):
            if i not in wanted and names & used:
                wanted.add(i)
                used |= _words(text)
                grew = True
    return "".join(text for i, (_names, text) in enumerate(parts) if i in wanted)


def _words(lua: str) -> set[str]:
    """The names ``lua`` mentions outside its comments."""
    return set(re.findall(r"\w+", re.sub(r"--[^\n]*", "", lua)))


@cache
def load(name: str) -> Script:
    """The script ``<name>.lua`` with the prelude it uses prepended (cached per process)."""
    body = _read(f"{name}.lua")
    return Script(prelude_for(body) + body, f"{name}.lua")


def run(client: Any, name: str, keys: list[str], args: list[Any]) -> Any:
    """Run one script: one round trip (two on the first call per shard)."""
    return load(name)(client, keys, args)


def queue_in(pipe: Any, name: str, keys: list[str], args: list[Any]) -> tuple[Any, ...]:
    """Add an EVALSHA to a non-transactional pipeline; keep the call for :func:`settle`."""
    script = load(name)
    # execute_command: redis-py's ClusterPipeline blocks the ``evalsha`` method, though it
    # routes the raw command by its first key like any other
    pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
    return (script, keys, args)


def settle(client: Any, results: list[Any], calls: dict[int, tuple[Any, ...]],
           best_effort: Collection[int] = ()) -> list[Any]:
    """Replace NOSCRIPT replies of a pipeline by re-running those scripts with EVAL.

    ``calls`` maps a result index to what :func:`queue_in` returned. Any other error
    reply is raised, except at the ``best_effort`` indices (e.g. the id index, on another
    shard than the topic: its failure must not fail the topic's step). The pipeline must
    have been executed with ``raise_on_error=False``.
    """
    out = list(results)
    for i, value in enumerate(out):
        if isinstance(value, NoScriptError) and i in calls:
            script, keys, args = calls[i]
            out[i] = script(client, keys, args)
        elif isinstance(value, Exception) and i not in best_effort:
            raise value
    return out
