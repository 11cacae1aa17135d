"""Flow definitions: the task spec, its validation, and the plugin base class.

A flow type is a list of :class:`TaskSpec` - written by a Python plugin's ``workflow()``
through ``add_task`` (the original's shape) or posted as JSON (``flow_type_create``). Both
go through :func:`validate`, which names the task in every error, so a bad definition is
refused when it is created, never half-way through a run.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

from butterfly_common.mq.keys import check_topic

TRIGGER_RULES = ("all_success", "all_done", "one_failed")
BACKOFFS = ("fixed", "exponential")
MAX_TASKS = 500
MAX_RETRIES = 100
MAX_LABEL = 64
MAX_CMD = 128
ALL_TASKDATA = "all_taskdata"
#: A map task's items: at most this many, each a child task ``<label>[<index>]``.
MAX_MAP_ITEMS = 10_000
MAX_MAP_LABEL = MAX_LABEL - len(f"[{MAX_MAP_ITEMS - 1}]")
DEFAULT_MAX_PARALLEL = 32
#: A signal task calls no handler: its cmd is this name (never published).
SIGNAL_CMD = "/xingqiao/signal"
ON_TIMEOUT = ("fail", "skip", "default")
MAX_APPROVAL = 255
#: A sub-flow task calls no handler either: it creates a flow of another type and waits.
SUBFLOW_CMD = "/xingqiao/subflow"
SUBFLOW_KEYS = frozenset(("type", "version"))
ITEM_LABEL = re.compile(r"\[\d+\]$")
#: A compensation task's label: this prefix and the label of the step it undoes.
UNDO_PREFIX = "undo:"
UNDO_KEYS = frozenset(("cmd", "params", "retrymax", "timeout"))


class DefinitionError(ValueError):
    """A flow definition is invalid; ``errors`` has one line per problem, each naming the
    task (``task <label>: ...``)."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


@dataclass
class TaskSpec:
    """One task as defined: what to call, with which data, under which policy."""

    label: str
    cmd: str
    params: dict[str, Any] | None = None
    requires: list[str] = field(default_factory=list)
    provides: list[str] = field(default_factory=list)
    dependencies: list[str] = field(default_factory=list)
    retrymax: int = 0
    is_save: bool = False
    timeout: float | None = None
    extra: dict[str, Any] | None = None
    retry_delay: float | None = None
    retry_backoff: str = "fixed"
    trigger_rule: str = "all_success"
    #: Dynamic map: the name (looked up as ``requires`` are) of a list; the task runs
    #: once per item, at most ``max_parallel`` at a time, the item as param ``map_as``.
    map_over: str | None = None
    max_parallel: int = DEFAULT_MAX_PARALLEL
    map_as: str = "item"
    #: A signal task: waits for ``send_signal(job_id, signal, payload)``; the payload is
    #: its result. ``timeout`` bounds the wait, then ``on_timeout``: fail (timed_out),
    #: skip, or default (finish with ``default`` as the result).
    signal: str | None = None
    on_timeout: str = "fail"
    default: dict[str, Any] | None = None
    #: An approval: a signal task waiting for a person (the console's "waiting for you"
    #: list), ``approval`` the question shown; its signal defaults to the label.
    approval: str | None = None
    #: A sub-flow: ``{"type": <flow type>, "version": <optional pin>}``; its params (as
    #: any task's) become the child flow's ``job_extra``, the child's saved result
    #: (``ret_data``) becomes this task's result.
    subflow: dict[str, Any] | None = None
    #: Saga: how to undo this step once it finished and the flow then failed (``cmd``,
    #: optional ``params``, ``retrymax``, ``timeout``); see ``saga.py``.
    undo: dict[str, Any] | None = None
    #: Saga: a flow-level task run once when the flow fails (after the undos), never
    #: otherwise; it has no dependencies and no task depends on it.
    on_failure: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


SPEC_KEYS = frozenset(TaskSpec.__dataclass_fields__)


def _names(value: Any) -> list[str] | None:
    """A list of names given as a list of str or a comma-separated str (as stored)."""
    if value is None:
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) and v for v in value):
        return list(value)
    return None


def spec_from_dict(raw: Any, index: int) -> TaskSpec:
    """A TaskSpec from one JSON task object; DefinitionError naming it when malformed."""
    if not isinstance(raw, dict):
        raise DefinitionError([f"task #{index}: must be an object"])
    name = raw.get("label") if isinstance(raw.get("label"), str) else f"#{index}"
    unknown = sorted(set(raw) - SPEC_KEYS)
    errors = [f"task {name}: unknown keys {', '.join(unknown)}"] if unknown else []
    waits = "signal" in raw or "approval" in raw
    spawns = "subflow" in raw
    for key in ("label",) if waits or spawns else ("label", "cmd"):
        if key not in raw:
            errors.append(f"task {name}: {key} is required")
    if waits and "cmd" in raw:
        errors.append(f"task {name}: a signal task calls no handler: no cmd")
    if spawns and "cmd" in raw:
        errors.append(f"task {name}: a sub-flow task calls no handler: no cmd")
    if errors:
        raise DefinitionError(errors)
    if spawns and not waits:
        raw = {**raw, "cmd": SUBFLOW_CMD}
    if waits:
        raw = {**raw, "cmd": SIGNAL_CMD}
        if "signal" not in raw:
            raw["signal"] = raw["label"]
    return TaskSpec(**{k: raw[k] for k in raw})


def _cmd_errors(cmd: Any) -> list[str]:
    """What is wrong with a handler path (none: a valid /app/handler topic)."""
    try:
        if not isinstance(cmd, str) or len(cmd) > MAX_CMD:
            raise ValueError(f"cmd must be a str of <= {MAX_CMD} chars")
        check_topic(cmd)
        if not cmd.startswith("/") or cmd.count("/") != 2:
            raise ValueError(f"cmd must be a handler path /app/handler, not {cmd!r}")
    except ValueError as exc:
        return [str(exc)]
    return []


def _check_task(spec: TaskSpec) -> list[str]:
    errs: list[str] = []
    who = f"task {spec.label}"
    if not isinstance(spec.label, str) or not spec.label or len(spec.label) > MAX_LABEL \
            or "," in spec.label or not spec.label.isprintable():
        return [f"task {spec.label!r}: label must be 1..{MAX_LABEL} printable chars, no comma"]
    errs += [f"{who}: {e}" for e in _cmd_errors(spec.cmd)]
    for key in ("requires", "provides", "dependencies"):
        names = _names(getattr(spec, key))
        if names is None:
            errs.append(f"{who}: {key} must be a list of names")
        else:
            setattr(spec, key, names)
    for key in ("params", "extra"):
        if getattr(spec, key) is not None and not isinstance(getattr(spec, key), dict):
            errs.append(f"{who}: {key} must be an object")
    if isinstance(spec.retrymax, bool) or not isinstance(spec.retrymax, int) \
            or not 0 <= spec.retrymax <= MAX_RETRIES:
        errs.append(f"{who}: retrymax must be a whole number 0..{MAX_RETRIES}")
    for key in ("timeout", "retry_delay"):
        value = getattr(spec, key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or value < 0 or (key == "timeout" and value == 0)):
            errs.append(f"{who}: {key} must be a number of seconds > 0")
    if not isinstance(spec.is_save, bool):
        errs.append(f"{who}: is_save must be true or false")
    if spec.retry_backoff not in BACKOFFS:
        errs.append(f"{who}: retry_backoff must be one of {', '.join(BACKOFFS)}")
    if spec.trigger_rule not in TRIGGER_RULES:
        errs.append(f"{who}: trigger_rule must be one of {', '.join(TRIGGER_RULES)}")
    if ITEM_LABEL.search(spec.label):
        errs.append(f"{who}: a label ending in [<number>] is reserved for map items")
    return errs + _check_map(spec, who) + _check_signal(spec, who) \
        + _check_subflow(spec, who) + _check_saga(spec, who)


def _check_subflow(spec: TaskSpec, who: str) -> list[str]:
    sub = spec.subflow
    if sub is None:
        return []
    if not isinstance(sub, dict) or set(sub) - SUBFLOW_KEYS or "type" not in sub:
        return [f"{who}: subflow must be an object {{\"type\": <flow type>, \"version\": "
                "<optional>}"]
    errs: list[str] = []
    kind, version = sub["type"], sub.get("version")
    if not isinstance(kind, str) or not 0 < len(kind) <= MAX_LABEL:
        errs.append(f"{who}: subflow type must be a flow type name of 1..{MAX_LABEL} chars")
    if version is not None and not (
            (isinstance(version, int) and not isinstance(version, bool) and version > 0)
            or (isinstance(version, str) and 0 < len(version) <= MAX_LABEL)):
        errs.append(f"{who}: subflow version must be a number >= 1 or a plugin hash")
    if spec.signal is not None or spec.map_over is not None:
        errs.append(f"{who}: a sub-flow task cannot be a signal or map_over")
    if spec.retrymax:
        errs.append(f"{who}: a sub-flow task has no retrymax (retry_job of the flow "
                    "creates a new child)")
    return errs


def _check_saga(spec: TaskSpec, who: str) -> list[str]:
    """``undo`` is a handler call of its own; an ``on_failure`` task is a plain call."""
    errs: list[str] = []
    if spec.label.startswith(UNDO_PREFIX):
        errs.append(f"{who}: a label starting with {UNDO_PREFIX} is reserved for "
                    "compensation tasks")
    if not isinstance(spec.on_failure, bool):
        errs.append(f"{who}: on_failure must be true or false")
    elif spec.on_failure:
        if spec.dependencies or spec.requires or spec.provides or spec.is_save \
                or spec.map_over is not None or spec.signal is not None \
                or spec.undo is not None or spec.extra or spec.retry_delay is not None \
                or spec.retry_backoff != "fixed" or spec.trigger_rule != "all_success":
            errs.append(f"{who}: an on_failure task runs once the flow failed: only "
                        "label, cmd, params, retrymax and timeout")
        return errs
    if spec.undo is None:
        return errs
    undo = spec.undo
    if not isinstance(undo, dict):
        return [*errs, f"{who}: undo must be an object {{cmd, params, retrymax, timeout}}"]
    unknown = sorted(set(undo) - UNDO_KEYS)
    if unknown:
        errs.append(f"{who}: undo has unknown keys {', '.join(map(str, unknown))}")
    if len(spec.label) > MAX_LABEL - len(UNDO_PREFIX):
        errs.append(f"{who}: a task with undo has a label of at most "
                    f"{MAX_LABEL - len(UNDO_PREFIX)} chars")
    if "cmd" not in undo:
        return [*errs, f"{who}: undo needs a cmd (the handler that undoes the step)"]
    errs += [f"{who}: undo {e}" for e in _cmd_errors(undo["cmd"])]
    if undo.get("params") is not None and not isinstance(undo["params"], dict):
        errs.append(f"{who}: undo params must be an object")
    retrymax = undo.get("retrymax", 0)
    if isinstance(retrymax, bool) or not isinstance(retrymax, int) \
            or not 0 <= retrymax <= MAX_RETRIES:
        errs.append(f"{who}: undo retrymax must be a whole number 0..{MAX_RETRIES}")
    timeout = undo.get("timeout")
    if timeout is not None and (isinstance(timeout, bool)
                                or not isinstance(timeout, (int, float)) or timeout <= 0):
        errs.append(f"{who}: undo timeout must be a number of seconds > 0")
    return errs


def _check_signal(spec: TaskSpec, who: str) -> list[str]:
    errs: list[str] = []
    if spec.on_timeout not in ON_TIMEOUT:
        errs.append(f"{who}: on_timeout must be one of {', '.join(ON_TIMEOUT)}")
    if spec.default is not None and not isinstance(spec.default, dict):
        errs.append(f"{who}: default must be an object (the result on timeout)")
    if spec.signal is None:
        if spec.on_timeout != "fail" or spec.default is not None \
                or spec.approval is not None:
            errs.append(f"{who}: on_timeout, default and approval are for signal tasks")
        return errs
    if not isinstance(spec.signal, str) or not 0 < len(spec.signal) <= MAX_LABEL \
            or not spec.signal.isprintable():
        errs.append(f"{who}: signal must be a name of 1..{MAX_LABEL} printable chars")
    if spec.map_over is not None:
        errs.append(f"{who}: a signal task cannot map_over")
    if spec.approval is not None and (not isinstance(spec.approval, str)
                                      or not 0 < len(spec.approval) <= MAX_APPROVAL):
        errs.append(f"{who}: approval must be a question of 1..{MAX_APPROVAL} chars")
    return errs


def _check_map(spec: TaskSpec, who: str) -> list[str]:
    errs: list[str] = []
    if isinstance(spec.max_parallel, bool) or not isinstance(spec.max_parallel, int) \
            or not 1 <= spec.max_parallel <= MAX_MAP_ITEMS:
        errs.append(f"{who}: max_parallel must be a whole number 1..{MAX_MAP_ITEMS}")
    if not isinstance(spec.map_as, str) or not 0 < len(spec.map_as) <= MAX_LABEL:
        errs.append(f"{who}: map_as must be a name of 1..{MAX_LABEL} chars")
    if spec.map_over is None:
        return errs
    if not isinstance(spec.map_over, str) or not 0 < len(spec.map_over) <= MAX_LABEL:
        errs.append(f"{who}: map_over must be a name of 1..{MAX_LABEL} chars (a list in "
                    "an upstream result or job_extra)")
    if len(spec.label) > MAX_MAP_LABEL:
        errs.append(f"{who}: a map task's label has at most {MAX_MAP_LABEL} chars")
    return errs


def _cycle(specs: dict[str, TaskSpec]) -> list[str] | None:
    """One dependency cycle as a label path, or None (iterative DFS: deep flows are fine)."""
    color: dict[str, int] = {}
    for root in specs:
        if color.get(root):
            continue
        stack: list[tuple[str, int]] = [(root, 0)]
        path: list[str] = []
        while stack:
            label, i = stack.pop()
            if i == 0:
                color[label] = 1
                path.append(label)
            deps = [d for d in specs[label].dependencies if d in specs]
            if i < len(deps):
                stack.append((label, i + 1))
                dep = deps[i]
                if color.get(dep) == 1:
                    return [*path[path.index(dep):], dep]
                if not color.get(dep):
                    stack.append((dep, 0))
            else:
                color[label] = 2
                path.pop()
    return None


def validate(specs: list[TaskSpec]) -> list[TaskSpec]:
    """Check a whole flow; DefinitionError listing every problem, each naming its task."""
    if not [s for s in specs if s.on_failure is not True]:
        raise DefinitionError(["a flow needs at least one task"])
    if len(specs) > MAX_TASKS:
        raise DefinitionError([f"a flow has at most {MAX_TASKS} tasks, not {len(specs)}"])
    errors: list[str] = []
    by_label: dict[str, TaskSpec] = {}
    for spec in specs:
        errors += _check_task(spec)
        if spec.label in by_label:
            errors.append(f"task {spec.label}: label used twice")
        by_label[spec.label] = spec
    for spec in specs:
        for dep in spec.dependencies if isinstance(spec.dependencies, list) else []:
            if dep == spec.label:
                errors.append(f"task {spec.label}: depends on itself")
            elif dep not in by_label:
                errors.append(f"task {spec.label}: unknown dependency {dep}")
            elif by_label[dep].on_failure is True:
                errors.append(f"task {spec.label}: depends on on_failure task {dep}")
    if not errors:
        cycle = _cycle(by_label)
        if cycle:
            errors.append(f"task {cycle[0]}: dependency cycle {' -> '.join(cycle)}")
    if errors:
        raise DefinitionError(errors)
    return specs


def unserved_warnings(specs: list[TaskSpec], known_topics: set[str]) -> list[str]:
    """Warnings for tasks whose topic no consumer has ever served (maybe a typo)."""
    found = [f"task {s.label}: topic {s.cmd} has never been served by any consumer"
             for s in specs if s.cmd not in known_topics and s.signal is None
             and s.subflow is None]
    return found + [f"task {s.label}: undo topic {s.undo['cmd']} has never been served by "
                    "any consumer" for s in specs
                    if isinstance(s.undo, dict) and s.undo.get("cmd") not in known_topics]


class Workflow:
    """Base class of a Python flow type (the original's ``WorkflowRunner``).

    Override :meth:`params_check` (read ``self.job_extra``, raise to refuse the flow) and
    :meth:`workflow` (call :meth:`add_task` per task). One instance per create_job.
    """

    def __init__(self, job_extra: dict[str, Any]) -> None:
        self.job_extra = job_extra
        self.tasks: list[TaskSpec] = []

    def params_check(self) -> None:
        """Refuse a bad ``job_extra`` by raising (the message becomes the x-reason)."""

    def workflow(self) -> None:
        raise NotImplementedError("a flow type defines workflow()")

    def add_task(self, label: str, cmd: str, params: dict | None = None,
                 requires: list[str] | None = None, provides: list[str] | None = None,
                 dependencies: list[str] | None = None, retrymax: int = 0,
                 is_save: bool = False, timeout: float | None = None,
                 extra: dict | None = None, *, retry_delay: float | None = None,
                 retry_backoff: str = "fixed", trigger_rule: str = "all_success",
                 map_over: str | None = None, max_parallel: int = DEFAULT_MAX_PARALLEL,
                 map_as: str = "item", undo: dict | None = None) -> TaskSpec:
        """Add one task: the original's parameters, then the new policy keywords
        (``map_over``: run it once per item of that list, see the docs' Dynamic map;
        ``undo``: ``{"cmd", "params"}`` compensating it when the flow fails later)."""
        spec = TaskSpec(label, cmd, params, list(requires or []), list(provides or []),
                        list(dependencies or []), retrymax, is_save, timeout or None, extra,
                        retry_delay, retry_backoff, trigger_rule, map_over, max_parallel,
                        map_as, undo=undo)
        self.tasks.append(spec)
        return spec

    def add_on_failure(self, label: str, cmd: str, params: dict | None = None,
                       retrymax: int = 0, timeout: float | None = None) -> TaskSpec:
        """Add a task run once when the flow fails, after the undos of its finished
        steps (a saga's last word: alert, release a lock); never run otherwise."""
        spec = TaskSpec(label, cmd, params, retrymax=retrymax, timeout=timeout or None,
                        on_failure=True)
        self.tasks.append(spec)
        return spec

    def add_signal(self, label: str, signal: str, dependencies: list[str] | None = None,
                   timeout: float | None = None, on_timeout: str = "fail",
                   default: dict | None = None, *, provides: list[str] | None = None,
                   is_save: bool = False,
                   trigger_rule: str = "all_success") -> TaskSpec:
        """Add a task that waits for ``send_signal(job_id, signal, payload)`` (kept if
        sent earlier); the payload becomes its result. After ``timeout`` seconds:
        ``on_timeout`` fail, skip, or default (``default`` becomes the result)."""
        spec = TaskSpec(label, SIGNAL_CMD, None, [], list(provides or []),
                        list(dependencies or []), 0, is_save, timeout or None, None,
                        trigger_rule=trigger_rule, signal=signal, on_timeout=on_timeout,
                        default=default)
        self.tasks.append(spec)
        return spec

    def add_approval(self, label: str, question: str,
                     dependencies: list[str] | None = None, timeout: float | None = None,
                     on_timeout: str = "fail", default: dict | None = None, *,
                     is_save: bool = False, trigger_rule: str = "all_success") -> TaskSpec:
        """Add a task that waits for a person: the console lists it ("waiting for
        you") with ``question``; Approve / Reject with a comment sends its signal (the
        label) with ``{"approved", "comment", "by"}``, which becomes its result."""
        spec = self.add_signal(label, label, dependencies, timeout, on_timeout, default,
                               is_save=is_save, trigger_rule=trigger_rule)
        spec.approval = question
        return spec

    def add_subflow(self, label: str, job_type: str, version: int | str | None = None, *,
                    params: dict | None = None, requires: list[str] | None = None,
                    provides: list[str] | None = None,
                    dependencies: list[str] | None = None, is_save: bool = False,
                    timeout: float | None = None,
                    trigger_rule: str = "all_success") -> TaskSpec:
        """Add a task that runs a flow of ``job_type`` (``version`` pins one) with its
        params as the child's ``job_extra``, waits for it, and takes its saved result.
        ``timeout`` becomes the child's ``job_timeout``."""
        sub: dict[str, Any] = {"type": job_type}
        if version is not None:
            sub["version"] = version
        spec = TaskSpec(label, SUBFLOW_CMD, params, list(requires or []),
                        list(provides or []), list(dependencies or []), 0, is_save,
                        timeout or None, trigger_rule=trigger_rule, subflow=sub)
        self.tasks.append(spec)
        return spec

    def build(self) -> list[TaskSpec]:
        """params_check, workflow, validate: the tasks of one new flow."""
        self.params_check()
        self.workflow()
        return validate(self.tasks)


#: The original's class name, so its plugins keep working.
WorkflowRunner = Workflow
