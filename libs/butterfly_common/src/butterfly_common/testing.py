"""Real servers for tests: redis-server (and friends) on free ports, plus waiting helpers.

Tests start their own servers instead of sharing the machine's Redis on 6379, and wait
on conditions with a deadline instead of sleeping and hoping.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def free_port() -> int:
    """A TCP port nobody listens on right now (the kernel's pick)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(check: Callable[[], T], timeout: float = 10.0, interval: float = 0.02,
               what: str = "condition") -> T:
    """Call ``check`` until it returns something truthy; raise TimeoutError at the deadline."""
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while True:
        try:
            value = check()
            if value:
                return value
        except Exception as exc:
            last_exc = exc
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not met within {timeout}s (last error: {last_exc!r})")
        time.sleep(interval)


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """True when something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


class ManagedProcess:
    """A child process with a temp working dir, stopped (and reaped) on :meth:`stop`."""

    def __init__(self, argv: list[str], port: int, workdir: Path | None = None) -> None:
        self.argv = argv
        self.port = port
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="bf-test-"))
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 10.0) -> ManagedProcess:
        # argv list from the test itself, never a shell string
        self.proc = subprocess.Popen(self.argv, cwd=self.workdir, stdout=subprocess.DEVNULL,  # noqa: S603
                                     stderr=subprocess.DEVNULL)
        wait_until(lambda: self._alive_or_raise() and port_open(self.port), timeout,
                   what=f"{self.argv[0]} listening on {self.port}")
        return self

    def _alive_or_raise(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.argv} exited with {self.proc.returncode}")
        return True

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


class RedisServer(ManagedProcess):
    """A throw-away ``redis-server`` on a free loopback port, keeping nothing on disk."""

    def __init__(self, port: int | None = None, *extra: str) -> None:
        port = port or free_port()
        super().__init__(["redis-server", "--bind", "127.0.0.1", "--port", str(port),
                          "--save", "", "--appendonly", "no", *extra], port)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"
