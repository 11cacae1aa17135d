"""Run a few long-lived processes side by side, their output prefixed, and stop them together.

What `make run` needs and honcho did not give: argv lists (no shell), each child in its own
process group so Ctrl-C reaches only this supervisor, which then stops every child
gracefully with SIGTERM; a clean stop is silent and exits 0; a child that dies on its own
stops the rest and exits 1 with one line saying which.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import IO

COLOURS = ("36", "33", "32", "35", "34", "31", "96", "93", "92", "95", "94")
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@dataclass
class Child:
    """One process to run: ``argv`` (no shell) with exactly ``env``."""

    name: str
    argv: list[str]
    env: dict[str, str]
    #: Stopped only after every other child has exited (the fleet's own Redis: services
    #: unregister from it on their way out).
    stop_last: bool = False
    proc: subprocess.Popen | None = field(default=None, repr=False)


try:
    _prctl = ctypes.CDLL(None, use_errno=True).prctl  # resolved before any fork
except (OSError, AttributeError):  # not Linux: children outlive a killed supervisor
    _prctl = None


def _die_with_parent() -> None:
    """Runs in the child before exec: SIGTERM it when the supervisor dies, even by SIGKILL."""
    if _prctl is not None:
        _prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Supervisor:
    """Start children, relay their output, stop them all on a signal or on the first exit."""

    def __init__(self, children: Sequence[Child], cwd: str, out: IO[str] = sys.stdout,
                 stop_timeout: float = 40.0) -> None:
        self.children = list(children)
        self.cwd = cwd
        self.out = out
        self.stop_timeout = stop_timeout
        self.stopping = threading.Event()
        self.died: list[Child] = []
        self._lock = threading.Lock()
        self._width = max((len(c.name) for c in self.children), default=0)
        self._colour = out.isatty()

    def say(self, name: str, line: str, index: int = 0) -> None:
        """Write one prefixed line, coloured on a terminal."""
        prefix = f"{name:<{self._width}} |"
        if self._colour:
            prefix = f"\033[{COLOURS[index % len(COLOURS)]}m{prefix}\033[0m"
        with self._lock:
            self.out.write(f"{prefix} {line.rstrip()}\n")
            self.out.flush()

    def start(self) -> None:
        """Start every child, then the threads that relay and watch them (no thread runs
        while a child is forked, so the pre-exec hook is safe)."""
        for child in self.children:
            # argv lists built by fleet.py from deploy/fleet.toml, never a shell string
            child.proc = subprocess.Popen(  # noqa: S603
                child.argv, cwd=self.cwd, env=child.env, stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, process_group=0,
                preexec_fn=_die_with_parent)
        for index, child in enumerate(self.children):
            threading.Thread(target=self._relay, args=(child, index), daemon=True,
                             name=f"relay-{child.name}").start()
            threading.Thread(target=self._watch, args=(child,), daemon=True,
                             name=f"watch-{child.name}").start()

    def _relay(self, child: Child, index: int) -> None:
        assert child.proc is not None and child.proc.stdout is not None
        for raw in child.proc.stdout:
            self.say(child.name, raw.decode("utf-8", "replace"), index)

    def _watch(self, child: Child) -> None:
        assert child.proc is not None
        child.proc.wait()
        if not self.stopping.is_set():
            self.died.append(child)
            self.stopping.set()

    def alive(self) -> bool:
        """False once any child has exited on its own."""
        return not self.died

    def install_signal_handlers(self) -> None:
        for sig in STOP_SIGNALS:
            signal.signal(sig, lambda *_: self.stopping.set())

    def wait(self, until: Callable[[], bool] | None = None, timeout: float = 0.0) -> bool:
        """Block until a stop signal or a child's exit; with ``until``, return True as soon as
        it holds (polled), False on stop or after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not self.stopping.is_set():
            if until is not None:
                if until():
                    return True
                if time.monotonic() > deadline:
                    return False
            self.stopping.wait(0.5)
        return False

    def stop(self) -> int:
        """SIGTERM every child, SIGKILL what is left after ``stop_timeout``; the exit code."""
        self.stopping.set()
        deadline = time.monotonic() + self.stop_timeout
        killed: list[str] = []
        first = [c for c in self.children if not c.stop_last]
        last = [c for c in self.children if c.stop_last]
        for wave in (first, last):
            for child in wave:
                if child.proc and child.proc.poll() is None:
                    child.proc.terminate()
            for child in wave:
                assert child.proc is not None
                try:
                    child.proc.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    killed.append(child.name)
                    os.killpg(child.proc.pid, signal.SIGKILL)
                    child.proc.wait(10)
        rc = 0
        for child in self.died:
            self.say("make run", f"{child.name} exited with rc={child.proc.returncode}; "
                                 "stopped the fleet")
            rc = 1
        if killed:
            self.say("make run", f"killed {', '.join(killed)}: no exit within "
                                 f"{self.stop_timeout:g}s of SIGTERM")
            rc = 1
        return rc
