"""What a task receives and what its result must hold: the original's data passing.

``params`` set: used as is. Else each name of ``requires`` is looked up in the results of
the task's dependencies (in dependency order), then ``job_extra``, then the task's own
``extra`` - later sources win - and ``all_taskdata`` is the list of the dependencies'
results. ``provides`` is checked as a set (the original compared ordered lists).
"""

from __future__ import annotations

from typing import Any

from .definitions import ALL_TASKDATA

READY, SKIP, WAIT = "ready", "skip", "wait"
_DONE = frozenset(("finished", "failed", "skipped", "canceled", "timed_out"))
_BAD = frozenset(("failed", "timed_out"))


def readiness(rule: str, dep_states: list[str]) -> str:
    """May a waiting task run now (``ready``), never (``skip``), or not yet (``wait``)?

    - ``all_success`` (default): every dependency finished; skipped once one did not.
    - ``all_done``: every dependency ended, whatever the outcome (cleanup tasks).
    - ``one_failed``: as soon as one dependency failed or timed out; skipped when all
      ended without a failure (alert tasks).
    """
    if not dep_states:
        return READY
    done = all(s in _DONE for s in dep_states)
    if rule == "all_done":
        return READY if done else WAIT
    if rule == "one_failed":
        if any(s in _BAD for s in dep_states):
            return READY
        return SKIP if done else WAIT
    if all(s == "finished" for s in dep_states):
        return READY
    return SKIP if any(s in _DONE and s != "finished" for s in dep_states) else WAIT


def resolve(params: dict[str, Any] | None, requires: list[str],
            dep_results: list[dict[str, Any]], job_extra: dict[str, Any],
            task_extra: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """``(params, missing names)`` for one dispatch."""
    if params is not None:
        return dict(params), []
    if not requires:
        return {}, []
    pool: dict[str, Any] = {}
    for result in dep_results:
        pool.update(result)
    pool.update(job_extra)
    pool.update(task_extra)
    pool[ALL_TASKDATA] = list(dep_results)
    found = {name: pool[name] for name in requires if name in pool}
    return found, [name for name in requires if name not in pool]


def saved_data(result: dict[str, Any]) -> Any:
    """What an ``is_save`` task contributes to the flow's ``ret_data``: the result's
    ``data`` when it has one, else the result without ``stat`` (as the original)."""
    if "data" in result:
        return result["data"]
    return {k: v for k, v in result.items() if k != "stat"}
