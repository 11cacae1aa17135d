"""What every bench reports the same way: load, rounds, targets, a JSON copy.

A bench measures its systems round by round and hands each number to a :class:`Report`::

    report = Report("http_overhead", "GET /demo_api/ping under wrk -c16")
    for _ in range(rounds):
        report.add("bare flask", "req/s", 8300)
        report.add("butterfly", "req/s", 7600)
    report.target("butterfly / bare flask req/s", report.ratio("butterfly", "bare flask",
                  "req/s"), ">=", 0.9)
    sys.exit(report.finish())

``finish`` prints one table (min / median / max over the rounds of every metric), the
targets with a verdict computed from the medians, the load average before and after, and
writes the same as ``var/bench/<name>.json``. A verdict needs a machine that was quiet when
the bench started: when the load at start exceeds the core count it prints why and no
verdict. "The load at start" is the larger of

* the run queue now: runnable tasks (``procs_running`` of ``/proc/stat``, this process not
  counted) averaged over ``RUNQ_SECONDS`` - what the kernel's load average averages, without
  its one-minute memory; ``Report`` first waits up to ``BENCH_SETTLE_SECONDS`` for it to
  fall to ``QUIET_RUNQ``;
* the 1-minute load average when the run began: this bench's own start or, under
  ``make bench`` (``run_all.py`` sets ``BENCH_SUITE_LOAD``), the suite's start. A previous
  bench of the same suite has ended (its processes are gone, the run queue shows that),
  but its load stays in the 1-minute average for a minute or two, and waiting that out
  after every bench was a third of ``make bench``.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = Path(os.environ.get("BENCH_OUT_DIR", ROOT / "var" / "bench"))
CORES = os.cpu_count() or 1


RUNQ_SECONDS = 3.0
#: No verdict when the hypervisor took more than this share of the CPU during a bench: a
#: run with 12 % stolen swung the same system's rounds 2x apart.
STEAL_MAX = 5.0
#: ``settle`` waits for the run queue to fall to this many runnable tasks.
QUIET_RUNQ = 1.0


def loadavg() -> tuple[float, float, float]:
    """The 1, 5 and 15-minute load averages."""
    return os.getloadavg()


def _procs_running() -> int:
    with open("/proc/stat", encoding="ascii") as f:
        for line in f:
            if line.startswith("procs_running"):
                return int(line.split()[1])
    return 0


def cpu_ticks() -> tuple[int, int]:
    """(all CPU time, the part stolen by the hypervisor), in ticks since boot."""
    with open("/proc/stat", encoding="ascii") as f:
        fields = [int(x) for x in f.readline().split()[1:9]]
    return sum(fields), fields[7] if len(fields) > 7 else 0


def steal_percent(start: tuple[int, int], end: tuple[int, int]) -> float:
    """The share of the machine's CPU time the hypervisor gave to other guests between
    two :func:`cpu_ticks` readings: this kind of VM has slow spells no load average shows,
    and a bench that ran through one says so."""
    total = end[0] - start[0]
    return 100.0 * (end[1] - start[1]) / total if total > 0 else 0.0


def run_queue(seconds: float = RUNQ_SECONDS) -> float:
    """Runnable tasks averaged over ``seconds``, sampled every 50 ms (this process, running
    while it reads, not counted)."""
    samples = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        samples.append(max(0, _procs_running() - 1))
        time.sleep(0.05)
    return statistics.fmean(samples) if samples else 0.0


def wait_at_most(read: Callable[[], float], limit: float, max_seconds: float, what: str,
                 pause: float = 0.0) -> tuple[float, float]:
    """Read ``read()`` (``pause`` s apart) until it is at most ``limit`` or ``max_seconds``
    pass; returns ``(seconds waited, the last reading)``. Progress goes to stderr, the
    table stays clean."""
    t0 = time.monotonic()
    said = False
    while (value := read()) > limit and time.monotonic() - t0 < max_seconds:
        if not said:
            print(f"waiting for the machine to settle: {what} {value:.2f} > {limit:g} "
                  f"(up to {max_seconds:g} s)", file=sys.stderr, flush=True)
            said = True
        time.sleep(pause)
    return time.monotonic() - t0, value


def settle(max_seconds: float) -> tuple[float, float]:
    """Wait until the run queue is at most ``QUIET_RUNQ`` (or ``max_seconds`` pass);
    returns ``(seconds waited, the last run queue)``."""
    return wait_at_most(run_queue, QUIET_RUNQ, max_seconds, "runnable tasks")


def run_start_load() -> float:
    """The 1-minute load average when this run began (see the module docstring)."""
    suite = os.environ.get("BENCH_SUITE_LOAD")
    return float(suite) if suite else loadavg()[0]


@dataclass
class Target:
    """A goal on one derived figure: ``value op goal``."""

    label: str
    value: float
    op: str
    goal: float

    @property
    def met(self) -> bool:
        return self.value >= self.goal if self.op == ">=" else self.value <= self.goal


@dataclass
class Report:
    """The numbers of one bench run, over its rounds; see the module docstring."""

    name: str
    title: str
    settle_seconds: float = field(
        default_factory=lambda: float(os.environ.get("BENCH_SETTLE_SECONDS", "60")))
    values: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    targets: list[Target] = field(default_factory=list)
    #: % of the CPU the hypervisor stole during the bench (set by ``finish``)
    steal: float = field(default=0.0, init=False)

    def __post_init__(self) -> None:
        self.start_load = run_start_load()
        self.waited, self.runq = settle(self.settle_seconds)
        self.load_before = loadavg()
        self.ticks_before = cpu_ticks()
        self.started = time.time()

    def add(self, system: str, metric: str, value: float) -> None:
        """One round's ``metric`` of ``system``."""
        self.values.setdefault((system, metric), []).append(float(value))

    def note(self, system: str, text: str) -> None:
        """A line of context printed beside the system's rows."""
        self.notes[system] = text

    def median(self, system: str, metric: str) -> float:
        return statistics.median(self.values[(system, metric)])

    def ratio(self, a: str, b: str, metric: str) -> float:
        """median(a) / median(b) of ``metric``."""
        return self.median(a, metric) / self.median(b, metric)

    def paired_ratio(self, a: str, b: str, metric: str) -> float:
        """The median over rounds of a's ``metric`` / b's in the same round: rounds run the
        two back to back, so a slow spell of the machine (this kind of VM has them, for
        seconds at a time) spoils one pair rather than tilting both medians."""
        pairs = zip(self.values[(a, metric)], self.values[(b, metric)], strict=False)
        return statistics.median(x / y for x, y in pairs if y)

    def target(self, label: str, value: float, op: str, goal: float) -> Target:
        if op not in (">=", "<="):
            raise ValueError(f"op must be >= or <=, not {op!r}")
        t = Target(label, value, op, goal)
        self.targets.append(t)
        return t

    @property
    def refusal(self) -> str | None:
        """Why no verdict is given, or None when the machine was quiet enough."""
        if self.runq > CORES:
            return (f"{self.runq:.2f} runnable tasks at start exceed {CORES} cores (after "
                    f"waiting {self.waited:.0f} s): figures printed, no verdict")
        if self.start_load > CORES:
            return (f"load average {self.start_load:.2f} when the run began exceeds {CORES} "
                    f"cores: figures printed, no verdict")
        if self.steal > STEAL_MAX:
            return (f"the hypervisor took {self.steal:.1f} % of the CPU during the bench (more "
                    f"than {STEAL_MAX:g} %): the machine was not ours; figures printed, no "
                    "verdict")
        return None

    def finish(self) -> int:
        """Print the table and targets, write the JSON; 0 when every target is met (or no
        verdict could be given), 1 when one was missed."""
        load_after = loadavg()
        self.steal = steal_percent(self.ticks_before, cpu_ticks())
        rounds = max((len(v) for v in self.values.values()), default=0)
        print(f"\n{self.title}")
        print(f"load average before {fmt_load(self.load_before)}, after {fmt_load(load_after)}"
              f" ({CORES} cores); run queue at start {self.runq:.2f}, load when the run "
              f"began {self.start_load:.2f}; CPU stolen by the hypervisor {self.steal:.1f} %;"
              f" {rounds} round(s)")
        print(f"{'system':<24} {'metric':<16} {'min':>10} {'median':>10} {'max':>10}")
        for (system, metric), vals in self.values.items():
            print(f"{system:<24} {metric:<16} {num(min(vals)):>10} "
                  f"{num(statistics.median(vals)):>10} {num(max(vals)):>10}")
        for system, text in self.notes.items():
            print(f"  {system}: {text}")
        refusal = self.refusal
        if self.targets:
            print()
        for t in self.targets:
            verdict = "" if refusal else ("met" if t.met else "MISSED")
            print(f"{t.label:<46} {num(t.value):>10}  target {t.op} {num(t.goal):<8} {verdict}")
        if refusal:
            print(f"no verdict: {refusal}")
        self.write(load_after, refusal)
        if refusal:
            return 0
        return 0 if all(t.met for t in self.targets) else 1

    def write(self, load_after: tuple[float, float, float], refusal: str | None) -> Path:
        OUT_DIR.mkdir(parents=True, exist_ok=True)
        path = OUT_DIR / f"{self.name}.json"
        doc: dict[str, Any] = {
            "bench": self.name, "title": self.title, "started": self.started,
            "cores": CORES, "load_before": self.load_before, "load_after": load_after,
            "run_queue_before": round(self.runq, 2), "run_start_load": self.start_load,
            "settle_waited_s": round(self.waited, 1), "verdict_refused": refusal,
            "steal_percent": round(self.steal, 2),
            "rows": [{"system": s, "metric": m, "rounds": v, "min": min(v),
                      "median": statistics.median(v), "max": max(v)}
                     for (s, m), v in self.values.items()],
            "notes": self.notes,
            "targets": [{"label": t.label, "value": t.value, "op": t.op, "goal": t.goal,
                         "met": None if refusal else t.met} for t in self.targets],
        }
        path.write_text(json.dumps(doc, indent=2) + "\n")
        print(f"(written to {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path})")
        return path


def fmt_load(load: tuple[float, float, float]) -> str:
    return " / ".join(f"{x:.2f}" for x in load)


def num(x: float) -> str:
    """Compact: integers above 100 without decimals, small figures with two or three."""
    if x != x:  # NaN
        return "n/a"
    if x == 0:
        return "0"
    if abs(x) >= 100:
        return f"{x:.0f}"
    if abs(x) >= 1:
        return f"{x:.2f}"
    return f"{x:.3f}"


MYSQL_HOST, MYSQL_PORT = "127.0.0.1", 3306


@contextlib.contextmanager
def database_url(kind: str, tmp: Path, name: str = "ruqi_bench") -> Iterator[str]:
    """A DB URL for a bench: a SQLite file in ``tmp``, or (``kind`` ``mysql``) a private
    MariaDB database ``name``, dropped after."""
    from butterfly_common.testing import mariadb_database, port_open

    if kind == "sqlite":
        yield f"sqlite:///{tmp / 'ruqi.db'}"
        return
    if not port_open(MYSQL_PORT, MYSQL_HOST):
        raise SystemExit("MariaDB not reachable on 127.0.0.1:3306 (use --db sqlite)")
    with mariadb_database(name, MYSQL_HOST, MYSQL_PORT) as url:
        yield url
