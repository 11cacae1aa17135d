"""Real servers for tests: redis-server (and friends) on free ports, plus waiting helpers.

The pytest fixtures built on them live in :mod:`butterfly_common.testing.plugin` (loaded
automatically through the ``pytest11`` entry point); the recording HTTP server in
:mod:`butterfly_common.testing.callee`.

Tests start their own servers instead of sharing the machine's Redis on 6379, and wait
on conditions with a deadline instead of sleeping and hoping.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def free_port() -> int:
    """A TCP port nobody listens on right now (the kernel's pick)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


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

    def __init__(self, argv: list[str], port: int, workdir: Path | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.argv = argv
        self.port = port
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="bf-test-"))
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> ManagedProcess:
        # argv list from the test itself, never a shell string; its output is kept in
        # the workdir so a failing test can show it (:meth:`output_tail`)
        self.workdir.mkdir(parents=True, exist_ok=True)
        with open(self.output_path, "ab") as output:
            self.proc = subprocess.Popen(self.argv, cwd=self.workdir, stdout=output,  # noqa: S603
                                         stderr=subprocess.STDOUT, env=self.env)
        wait_until(lambda: self._alive_or_raise() and port_open(self.port), timeout,
                   what=f"{self.argv[0]} listening on {self.port}")
        return self

    @property
    def output_path(self) -> Path:
        """Where the process's stdout and stderr go."""
        return self.workdir / "output.log"

    def output_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines the process printed (for a failing test's message)."""
        try:
            text = self.output_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def _alive_or_raise(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.argv} exited with {self.proc.returncode}:\n"
                               f"{self.output_tail()}")
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


class ButterflyService(ManagedProcess):
    """``butterfly serve <service>`` (real gunicorn) on a free port, logs in its workdir."""

    def __init__(self, service: str, env: dict[str, str] | None = None,
                 port: int | None = None) -> None:
        port = port or free_port()
        workdir = Path(tempfile.mkdtemp(prefix=f"bf-{service}-"))
        full_env = {**os.environ, "BUTTERFLY_HOST": "127.0.0.1", "BUTTERFLY_PORT": str(port),
                    "BUTTERFLY_LOG_DIR": str(workdir / "log"),
                    "BUTTERFLY_DATA_DIR": str(workdir / "data"), **(env or {})}
        full_env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        super().__init__([sys.executable, "-m", "butterfly_common.cli", "serve", service],
                         port, workdir, full_env)
        self.service = service

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_dir(self) -> Path:
        return self.workdir / "log" / self.service

    def start(self, timeout: float = 30.0) -> ButterflyService:
        super().start(timeout)
        return self


class NginxSite(ManagedProcess):
    """Debian's nginx serving one site file (a ``server`` block, e.g. the nginx sample's
    ``butterfly-admin.conf``) on a free loopback port, from a private prefix ``tmp``.

    The other ``*.conf`` files of the site's folder (its includes) are copied beside it;
    ``rewrites`` replace text of the site (upstream ports, paths), and its ``listen 8000;``
    becomes the test's port: the sample runs as shipped but for those."""

    def __init__(self, site: Path, tmp: Path, rewrites: dict[str, str] | None = None) -> None:
        port = free_port()
        for conf in site.parent.glob("*.conf"):
            shutil.copy(conf, tmp / conf.name)
        text = site.read_text(encoding="utf-8")
        for old, new in {**(rewrites or {}), "listen 8000;": f"listen 127.0.0.1:{port};"
                         }.items():
            text = text.replace(old, new)
        (tmp / "site.conf").write_text(text, encoding="utf-8")
        temps = "".join(f"  {kind}_temp_path {tmp}/{kind};\n"
                        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        (tmp / "nginx.conf").write_text(
            f"daemon off;\nworker_processes 1;\npid {tmp}/nginx.pid;\n"
            f"error_log {tmp}/error.log;\nevents {{ worker_connections 256; }}\n"
            f"http {{\n  access_log off;\n{temps}  include site.conf;\n}}\n",
            encoding="utf-8")
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        super().__init__([nginx, "-p", str(tmp), "-c", str(tmp / "nginx.conf")], port)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


class RedisServer(ManagedProcess):
    """A throw-away ``redis-server`` on a free loopback port, keeping nothing on disk."""

    def __init__(self, port: int | None = None, *extra: str) -> None:
        port = port or free_port()
        super().__init__(["redis-server", "--bind", "127.0.0.1", "--port", str(port),
                          "--save", "", "--appendonly", "no", *extra], port)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


class Nutcracker(ManagedProcess):
    """A throw-away Twemproxy (nutcracker) pool in front of ``shard_ports``.

    Mirrors production: ``hash_tag: "{}"`` so a topic's keys share a shard, ketama over
    fnv1a_64, no auto-ejection (a dead shard errors instead of remapping keys).
    """

    BINARY = "/usr/sbin/nutcracker"

    def __init__(self, shard_ports: list[int], port: int | None = None) -> None:
        port = port or free_port()
        self.stats_port = free_port()
        self.shard_ports = list(shard_ports)
        super().__init__([], port)
        conf = self.workdir / "nutcracker.yml"
        servers = "".join(f"    - 127.0.0.1:{p}:1 s{i}\n"
                          for i, p in enumerate(self.shard_ports))
        conf.write_text(
            "bc:\n"
            f"  listen: 127.0.0.1:{port}\n"
            "  redis: true\n"
            "  hash: fnv1a_64\n"
            "  distribution: ketama\n"
            '  hash_tag: "{}"\n'
            "  auto_eject_hosts: false\n"
            "  server_retry_timeout: 2000\n"
            "  timeout: 3000\n"
            "  servers:\n" + servers, encoding="utf-8")
        self.argv = [self.BINARY, "-c", str(conf), "-s", str(self.stats_port),
                     "-a", "127.0.0.1", "-o", str(self.workdir / "nutcracker.log"),
                     "-p", str(self.workdir / "nutcracker.pid")]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


class RedisClusterServers:
    """``n`` redis-server masters (no replicas) joined into one Redis Cluster."""

    def __init__(self, n: int = 3) -> None:
        self.nodes = [RedisServer(None, "--cluster-enabled", "yes",
                                  "--cluster-config-file", "nodes.conf",
                                  "--cluster-port", str(free_port()),
                                  "--cluster-node-timeout", "5000")
                      for _ in range(n)]

    @property
    def ports(self) -> list[int]:
        return [node.port for node in self.nodes]

    @property
    def url(self) -> str:
        return f"redis+cluster://127.0.0.1:{self.nodes[0].port}/0"

    def _cli(self, port: int, *args: str) -> str:
        return subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(port), *args],  # noqa: S603, S607
                              capture_output=True, text=True, timeout=30, check=True).stdout

    def start(self, timeout: float = 30.0) -> RedisClusterServers:
        for node in self.nodes:
            node.start()
        addrs = [f"127.0.0.1:{p}" for p in self.ports]
        self._cli(self.ports[0], "--cluster", "create", *addrs, "--cluster-replicas", "0",
                  "--cluster-yes")
        for port in self.ports:
            def ready(p: int = port) -> bool:
                return "cluster_state:ok" in self._cli(p, "cluster", "info")

            wait_until(ready, timeout, interval=0.1, what=f"cluster_state:ok on {port}")
        return self

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
            shutil.rmtree(node.workdir, ignore_errors=True)

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


#: The queue's topologies: plain Redis, Twemproxy in front of two shards, a 3-master Cluster.
TOPOLOGIES = ("redis", "twemproxy", "cluster")


@contextlib.contextmanager
def queue_store(topology: str) -> Iterator[str]:
    """A fresh store of one of :data:`TOPOLOGIES`, stopped on the way out; yields the URL
    clients use (the nutcracker's, or a cluster node's ``redis+cluster://``)."""
    if topology == "redis":
        with RedisServer() as server:
            yield server.url
    elif topology == "twemproxy":
        with RedisServer() as s1, RedisServer() as s2, Nutcracker([s1.port, s2.port]) as nc:
            yield nc.url
    elif topology == "cluster":
        with RedisClusterServers(3) as cluster:
            yield cluster.url
    else:
        raise ValueError(f"unknown topology {topology!r}: one of {', '.join(TOPOLOGIES)}")


@contextlib.contextmanager
def mariadb_database(prefix: str = "bf_test", host: str = "127.0.0.1", port: int = 3306,
                     user: str = "root", password: str = "") -> Iterator[str]:
    """A private database ``<prefix>_<random>`` on a MariaDB/MySQL server, dropped on the
    way out; yields its ``mysql://`` URL. Raises (never skips) when the server does not
    answer: the tests that ask for it need a real one."""
    import pymysql

    name = f"{prefix}_{secrets.token_hex(4)}"
    try:
        conn = pymysql.connect(host=host, port=port, user=user, password=password,
                               autocommit=True)
    except pymysql.MySQLError as exc:
        raise RuntimeError(f"MariaDB not reachable on {host}:{port}: {exc}") from None
    try:
        with conn.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE {name}")
        auth = f"{user}:{password}" if password else user
        yield f"mysql://{auth}@{host}:{port}/{name}"
    finally:
        with conn.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS {name}")
        conn.close()


def child_pids(pid: int) -> list[int]:
    """PIDs whose parent is ``pid`` (e.g. the gunicorn workers of a master), from /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def stop_processes(pids: list[int], timeout: float = 10.0) -> None:
    """SIGSTOP ``pids`` and return once each is stopped (state ``T`` in /proc) or gone.

    kill() only queues the signal: a process running on another core goes on until it is
    next scheduled out, and may still send a command in that time. A test that reads what
    a frozen process holds must wait for the stop first."""
    import signal

    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGSTOP)

    def stopped(pid: int) -> bool:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return True  # gone
        return state in ("T", "t", "Z", "X")

    wait_until(lambda: all(stopped(p) for p in pids), timeout, 0.001, "the processes to stop")
