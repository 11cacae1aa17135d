"""The first run as a new user meets it: `make run`'s scripts/fleet.py in a fresh working
directory (its ports shifted, so it runs beside anything else), real processes.

- its own Redis is found by `./butterfly` in "another terminal" through the .env it wrote;
- the development admin token it created (printed once) works in the README's admin call;
- a second run stops with one line naming the port and the process holding it;
- Ctrl-C stops everything and exits 0 quietly; the next `make run`, in a terminal, keeps
  .env as it was, and Ctrl-C there ends make with 0 and no "make: ***" line;
- loglevel_set reaches every gunicorn worker (real `butterfly serve`, 2 workers).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import signal
import subprocess
import sys
import termios
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest
import requests

from butterfly_common.redis_client import make_redis
from butterfly_common.testing import ButterflyService, RedisServer, free_port, port_open, wait_until

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

from fleetdef import load_fleet  # noqa: E402

UP = "the fleet is up"


def clean_env() -> dict[str, str]:
    """A new user's shell: no BUTTERFLY_* settings (one worker each, to spare the CPU)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BUTTERFLY_")}
    return {**env, "BUTTERFLY_WORKERS": "1", "BUTTERFLY_CONSUME_MAX_IDLE": "0.1"}


def free_offset() -> int:
    """A shift of every fleet port onto ports nothing listens on, below 32768: the
    ephemeral range above it is where free_port() and outgoing connections take theirs."""
    ports = [inst.port for inst in load_fleet()]
    for _ in range(200):
        offset = int.from_bytes(os.urandom(2), "big") % 20000 + 10000
        if all(p + offset < 32768 and not port_open(p + offset) for p in ports):
            return offset
    raise RuntimeError("no free port range")


class FleetRun:
    """`make run` in ``workdir``: scripts/fleet.py in its own session, output to a file."""

    def __init__(self, workdir: Path, offset: int) -> None:
        self.workdir = workdir
        self.offset = offset
        self.log = workdir / f"run-{uuid.uuid4().hex[:6]}.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, str(ROOT / "scripts" / "fleet.py"), "--port-offset",
                 str(offset)], cwd=workdir, env=clean_env(), stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def wait_up(self) -> None:
        wait_until(lambda: UP in self.output or self.proc.poll() is not None, 180,
                   interval=0.2, what="the fleet up")
        assert self.proc.poll() is None, f"fleet.py exited:\n{self.output[-3000:]}"

    def ctrl_c(self) -> int:
        """What Ctrl-C in its terminal does: SIGINT to its process group."""
        os.killpg(self.proc.pid, signal.SIGINT)
        return self.proc.wait(90)

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A fresh directory with the repo's ./butterfly and .venv, as a new clone has, and the
    .env of an earlier run whose Redis is gone (so this run must start one whether or not
    something answers on 6379 here)."""
    work = tmp_path_factory.mktemp("first-run")
    shutil.copy2(ROOT / "butterfly", work / "butterfly")
    (work / ".venv").symlink_to(Path(sys.executable).parent.parent)
    (work / ".env").write_text(f"BUTTERFLY_REDIS_URL=redis://127.0.0.1:{free_port()}/0\n")
    return work


@pytest.fixture(scope="module")
def run(workdir):
    first = FleetRun(workdir, free_offset())
    try:
        first.wait_up()
        yield first
    finally:
        first.kill()


def dotenv(workdir: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in (workdir / ".env").read_text().splitlines()
                if "=" in line)


def port_of(run: FleetRun, service: str) -> int:
    return next(i.port for i in load_fleet() if i.service == service) + run.offset


def test_make_run_wrote_the_redis_it_started_and_a_token(run, workdir):
    values = dotenv(workdir)
    assert re.fullmatch(r"[0-9a-f]{48}", values["BUTTERFLY_ADMIN_TOKEN"])
    assert run.output.count(values["BUTTERFLY_ADMIN_TOKEN"]) == 1  # printed once
    assert make_redis(values["BUTTERFLY_REDIS_URL"]).ping()
    assert "starting redis-server at 127.0.0.1:" in run.output
    for inst in load_fleet():
        assert f"{inst.name:<12} http://127.0.0.1:{inst.port + run.offset}" in run.output


def test_butterfly_in_another_terminal_finds_the_fleet(run, workdir):
    result = subprocess.run([str(workdir / "butterfly"), "publish", "/demo_api/hello",
                             '{"str_info": "hi"}', "--wait", "--timeout", "30"],
                            env=clean_env(), capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert '"result": {"stat": "OK", "str_info": "hi"}' in result.stdout.splitlines()[1]


def test_admin_calls_with_the_development_token(run, workdir):
    core = f"http://127.0.0.1:{port_of(run, 'core')}"
    token = dotenv(workdir)["BUTTERFLY_ADMIN_TOKEN"]
    ok = requests.post(f"{core}/demo_log/loglevel_set", data={"level": "INFO"},
                       headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert ok.status_code == 200 and ok.json()["stat"] == "OK"
    wrong = requests.post(f"{core}/demo_log/loglevel_set", data={"level": "INFO"},
                          headers={"Authorization": "Bearer not-the-token-at-all"}, timeout=10)
    missing = requests.post(f"{core}/demo_log/loglevel_set", data={"level": "INFO"}, timeout=10)
    pages = "\n".join(path.read_text(encoding="utf-8") for path in
                      [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))])
    for reply in (wrong, missing):  # the docs' table (Writing handlers) quotes the real x-reason
        assert reply.status_code == 401
        assert f"| `{reply.headers['x-reason']}` |" in pages


def test_a_second_run_stops_with_one_line(run, workdir):
    second = subprocess.run([sys.executable, str(ROOT / "scripts" / "fleet.py"),
                             "--port-offset", str(run.offset)], cwd=workdir, env=clean_env(),
                            capture_output=True, text=True, timeout=60)
    assert second.returncode == 3 and second.stdout == ""
    lines = second.stderr.splitlines()
    assert len(lines) == 1, second.stderr
    core = port_of(run, "core")
    master = next(p for p in psutil.Process(run.proc.pid).children()
                  if p.cmdline()[-2:] == ["serve", "core"])
    assert lines[0].startswith(f"make run: port {core} (core) is in use by pid {master.pid} (")
    assert "serve core" in lines[0] and "another `make run`" in lines[0]
    # through make: the same one line, no "make: *** ... Error" under it
    made = subprocess.run(["make", "-s", "--no-print-directory", "-C", str(ROOT), "run",
                           f"FLEET_ARGS=--port-offset {run.offset}"], env=clean_env(),
                          capture_output=True, text=True, timeout=120)
    assert made.stdout == "" and made.stderr.splitlines() == lines, made.stderr


def test_ctrl_c_stops_quietly(run, workdir):
    children = psutil.Process(run.proc.pid).children(recursive=True)
    mark = len(run.output)
    assert run.ctrl_c() == 0
    tail = run.output[mark:]
    for noise in ("rc=", "Traceback", "Error", "exited with", "killed"):
        assert noise not in tail, tail
    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in children)
    assert not any(port_open(i.port + run.offset) for i in load_fleet())



class MakeRunInTerminal:
    """`make run` in ``workdir`` on a pseudo-terminal of its own, as a user types it."""

    def __init__(self, workdir: Path, offset: int) -> None:
        master, slave = os.openpty()
        self.master = master
        self.buffer = bytearray()
        self.proc = subprocess.Popen(
            ["make", "--no-print-directory", "run", f"FLEET_ARGS=--port-offset {offset}"],
            cwd=workdir, env=clean_env(), stdin=slave, stdout=slave, stderr=slave,
            start_new_session=True,
            preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0))  # its terminal
        os.close(slave)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:  # EIO: every process closed the terminal
                return
            if not chunk:
                return
            self.buffer += chunk

    @property
    def output(self) -> str:
        return self.buffer.decode("utf-8", "replace").replace("\r", "")

    def ctrl_c(self) -> int:
        os.write(self.master, b"\x03")  # the terminal sends SIGINT to its foreground group
        return self.proc.wait(90)

    def kill(self) -> None:
        """After a failure: make and everything under it (fleet.py has a group of its own)."""
        if self.proc.poll() is None:
            under = psutil.Process(self.proc.pid).children(recursive=True)
            os.killpg(self.proc.pid, signal.SIGKILL)
            for child in under:
                with contextlib.suppress(psutil.Error):
                    child.kill()
            self.proc.wait(30)
        os.close(self.master)


def test_make_run_in_a_terminal_keeps_env_and_ctrl_c_exits_0(run, workdir):
    """The next `make run`, typed in a terminal: .env as it was (same token, not printed
    again; same Redis port); Ctrl-C there ends make itself with 0 and no "make: ***"."""
    before = dotenv(workdir)
    for name in ("Makefile", "scripts", "libs", "services", "requirements"):  # a clone
        (workdir / name).symlink_to(ROOT / name)
    term = MakeRunInTerminal(workdir, run.offset)
    try:
        wait_until(lambda: UP in term.output or term.proc.poll() is not None, 180,
                   interval=0.2, what="make run up")
        assert UP in term.output, term.output
        assert dotenv(workdir) == before
        assert "admin token" not in term.output
        fleet_pids = [p.pid for p in psutil.Process(term.proc.pid).children(recursive=True)]
        mark = len(term.output)
        assert term.ctrl_c() == 0
        wait_until(lambda: not any(psutil.pid_exists(pid) and
                                   psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
                                   for pid in fleet_pids), 30, what="every process gone")
        tail = term.output[mark:]
        for noise in ("make: ***", "Error", "rc=", "Traceback", "Interrupt"):
            assert noise not in tail, tail
    finally:
        term.kill()


@pytest.fixture(scope="module")
def core_two_workers():
    token = uuid.uuid4().hex
    with RedisServer() as redis_server:
        service = ButterflyService("core", {"BUTTERFLY_REDIS_URL": redis_server.url,
                                            "BUTTERFLY_WORKERS": "2",
                                            "BUTTERFLY_ADMIN_TOKEN": token})
        with service:
            wait_until(lambda: requests.get(f"{service.url}/healthz", timeout=2).ok, 30,
                       what="core /healthz")
            yield service, {"Authorization": f"Bearer {token}"}


def served_by(service: ButterflyService, reqids: list[str]) -> set[str]:
    """The pids of the access-log lines of these calls."""
    wanted = set(reqids)
    text = (service.log_dir / "acc.log").read_text()
    return {line.split("\t")[1] for line in text.splitlines()
            if len(line.split("\t")) > 4 and line.split("\t")[4] in wanted}


def test_loglevel_set_reaches_every_worker(core_two_workers):
    service, auth = core_two_workers
    url = f"{service.url}/demo_log/loglevel_get"
    reply = requests.post(f"{service.url}/demo_log/loglevel_set", headers=auth,
                          json={"level": "debug", "logger": "butterfly.stack"}, timeout=10)
    assert reply.json()["applies_to"] == "every worker of core"

    def read(_: int) -> str:
        got = requests.get(url, params={"logger": "butterfly.stack"}, timeout=10)
        assert got.json() == {"stat": "OK", "logger": "butterfly.stack", "level": "DEBUG"}
        return got.headers["x-reqid"]

    reqids: list[str] = []

    def burst() -> bool:
        """80 reads at once, whichever worker takes each; on a loaded machine the second
        worker may still be booting during the first burst, so burst until both served
        (the access log is written in batches, hence the wait on it too)."""
        with ThreadPoolExecutor(8) as pool:
            reqids.extend(pool.map(read, range(80)))
        return len(served_by(service, reqids)) == 2

    with ThreadPoolExecutor(8) as pool:  # right away, whichever worker takes the read
        reqids.extend(pool.map(read, range(80)))
    wait_until(lambda: len(served_by(service, reqids)) == 2 or burst(), 60, interval=0.5,
               what="both workers served")


def test_loglevel_reaches_workers_that_serve_no_read(core_two_workers):
    """stackdump logs at WARNING to butterfly.stack and reads no level: once ERROR is set,
    no worker may log it, which only the per-worker poll can bring about."""
    service, auth = core_two_workers
    wf = service.log_dir / "common.log.wf"

    def dump() -> str:
        reply = requests.get(f"{service.url}/stackdump/stackdump", headers=auth, timeout=10)
        assert reply.json()["stat"] == "OK"
        return reply.headers["x-reqid"]

    first = dump()
    assert first in wf.read_text()  # logged while the level allows it
    requests.post(f"{service.url}/demo_log/loglevel_set", headers=auth,
                  json={"level": "ERROR", "logger": "butterfly.stack"}, timeout=10)
    quiet: list[str] = []

    def all_quiet() -> bool:
        with ThreadPoolExecutor(4) as pool:  # concurrent, so both workers take some
            reqids = list(pool.map(lambda _: dump(), range(8)))
        text = wf.read_text()
        if any(reqid in text for reqid in reqids):
            quiet.clear()  # a worker has not applied the level yet
            return False
        quiet.extend(reqids)
        return len(quiet) >= 16 and len(served_by(service, quiet)) == 2

    wait_until(all_quiet, 30, interval=0.05, what="no worker logging butterfly.stack")
