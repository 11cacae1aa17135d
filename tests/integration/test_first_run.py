"""The first run as a new user meets it: `make run`'s scripts/fleet.py in a fresh working
directory (its ports shifted, so it runs beside anything else), real processes.

- its own Redis is found by `./butterfly` in "another terminal" through the .env it wrote;
- the development admin token it created (printed once) works in the README's admin call;
- a second run stops with one line naming the port and the process holding it;
- Ctrl-C stops everything and exits 0 quietly; the next run keeps .env as it was;
- loglevel_set reaches every gunicorn worker (real `butterfly serve`, 2 workers).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
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
    """A shift of every fleet port onto ports nothing listens on."""
    ports = [inst.port for inst in load_fleet()]
    for _ in range(200):
        offset = int.from_bytes(os.urandom(2), "big") % 20000 + 20000
        if all(p + offset < 65000 and not port_open(p + offset) for p in ports):
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
        wait_until(lambda: self._running() and UP in self.output, 180, interval=0.2,
                   what="the fleet up")

    def _running(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"fleet.py exited {self.proc.returncode}:\n{self.output}")
        return True

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
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for reply in (wrong, missing):  # the README's table quotes the real x-reason
        assert reply.status_code == 401
        assert f"| `{reply.headers['x-reason']}` |" in readme


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


def test_ctrl_c_stops_quietly_and_the_next_run_keeps_env(run, workdir):
    before = dotenv(workdir)
    children = psutil.Process(run.proc.pid).children(recursive=True)
    mark = len(run.output)
    assert run.ctrl_c() == 0
    tail = run.output[mark:]
    for noise in ("rc=", "Traceback", "Error", "exited with", "killed"):
        assert noise not in tail, tail
    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in children)
    assert not any(port_open(i.port + run.offset) for i in load_fleet())

    again = FleetRun(workdir, run.offset)
    try:
        again.wait_up()
        assert dotenv(workdir) == before  # same token, same Redis port
        assert "admin token" not in again.output  # not created, not printed again
        assert again.ctrl_c() == 0
    finally:
        again.kill()


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

    with ThreadPoolExecutor(8) as pool:  # right away, whichever worker takes the read
        reqids = list(pool.map(read, range(80)))
    wait_until(lambda: len(served_by(service, reqids)) == 2, 10, what="both workers served")


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
