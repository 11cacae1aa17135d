"""The protocol's Lua scripts, loaded once, and how to run them inside a pipeline.

Each ``.lua`` file beside this module is one state change. :data:`PRELUDE` (server time,
record helpers, the field order) is prepended to each, so scripts stay short and agree on
the record layout. Scripts run by EVALSHA with EVAL fallback (:class:`Script`), never
``SCRIPT LOAD``: Twemproxy rejects it.
"""

from __future__ import annotations

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


@cache
def prelude() -> str:
    """Shared head of every script: the FIELDS table, then ``_prelude.lua``."""
    fields = ", ".join(f"'{f}'" for f in FIELDS)
    return f"local FIELDS = {{{fields}}}\n" + _read("_prelude.lua")


@cache
def load(name: str) -> Script:
    """The script ``<name>.lua`` with the prelude prepended (cached per process)."""
    return Script(prelude() + _read(f"{name}.lua"), f"{name}.lua")


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
