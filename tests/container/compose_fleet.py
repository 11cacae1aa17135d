"""The fleet of one deploy/compose*.yml file, driven with ``docker-compose`` as a user would,
under a project name of the test's own, with secrets from ``make compose-env``'s script."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests
import yaml

from butterfly_common.testing import port_open, wait_until

ROOT = Path(__file__).resolve().parents[2]
#: what each phase took, in seconds, printed at the end of the run (conftest)
TIMINGS: dict[str, float] = {}
#: one-shot services: done when exited 0, not "healthy"
ONE_SHOT = {"redis-cluster"}


@contextmanager
def timed(name: str) -> Iterator[None]:
    start = time.monotonic()
    yield
    TIMINGS[name] = round(time.monotonic() - start, 1)


def host_ca_certs() -> str:
    """The CA certificates this host added to its trust store (Debian keeps local ones in
    /usr/local/share/ca-certificates): what the image build's pip and npm must trust too,
    when egress goes through a TLS-inspecting proxy."""
    folder = Path("/usr/local/share/ca-certificates")
    files = sorted(folder.rglob("*.crt")) if folder.is_dir() else []
    return "\n".join(f.read_text(encoding="ascii") for f in files)


class ComposeFleet:
    """``docker-compose -p <project> -f deploy/<file> [-f <extra>...]`` with the settings
    of ``env_file`` (and ``env``)."""

    def __init__(self, file: str, project: str, env_file: Path,
                 extra_files: list[Path] | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.file = ROOT / "deploy" / file
        self.files = [self.file, *(extra_files or [])]
        self.project = project
        self.env_file = env_file
        self.secrets = dict(line.split("=", 1) for line in
                            env_file.read_text(encoding="utf-8").split())
        # the host's own BUTTERFLY_* settings must not leak into the containers
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("BUTTERFLY_")}
        self.env["BUTTERFLY_BUILD_CA_CERTS"] = host_ca_certs()
        self.env.update(env or {})

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secrets['BUTTERFLY_ADMIN_TOKEN']}"}

    def compose(self, *args: str, timeout: float = 900, check: bool = True,
                stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["docker-compose", "--env-file", str(self.env_file), "-p", self.project,
             *(a for f in self.files for a in ("-f", str(f))), *args],
            env=self.env, capture_output=True, text=True, timeout=timeout, input=stdin)
        if check:
            assert result.returncode == 0, (
                f"docker-compose {' '.join(args)} -> {result.returncode}\n{result.stderr[-4000:]}")
        return result

    def services(self) -> list[str]:
        return self.compose("config", "--services").stdout.split()

    def published_ports(self) -> list[int]:
        configs = [yaml.safe_load(f.read_text(encoding="utf-8")) for f in self.files]
        return [int(p.split(":")[0]) for c in configs for s in c["services"].values()
                for p in s.get("ports", ())]

    def containers(self, service: str | None = None) -> list[dict[str, Any]]:
        ids = self.compose("ps", "-a", "-q", *([service] if service else [])).stdout.split()
        if not ids:
            return []
        out = subprocess.run(["docker", "inspect", *ids], capture_output=True, text=True,
                             timeout=60, check=True).stdout
        return json.loads(out)

    def not_ready(self) -> list[str]:
        """Containers not (yet) where they should be: running and healthy, or for a
        one-shot service exited 0. Empty when the fleet is up."""
        lagging = []
        for c in self.containers():
            service = c["Config"]["Labels"]["com.docker.compose.service"]
            state = c["State"]
            if service in ONE_SHOT:
                ok = state["Status"] == "exited" and state["ExitCode"] == 0
            else:
                health = (state.get("Health") or {}).get("Status", "healthy")
                ok = state["Status"] == "running" and health == "healthy"
            if not ok:
                lagging.append(f"{c['Name'].lstrip('/')}: {state['Status']}"
                               f" {(state.get('Health') or {}).get('Status', '')}".rstrip())
        return lagging

    def wait_healthy(self, timeout: float = 240) -> None:
        last: list[str] = []

        def up() -> bool:
            nonlocal last
            last = self.not_ready()
            return not last

        try:
            wait_until(up, timeout, interval=1, what="every container healthy")
        except TimeoutError:
            logs = self.compose("logs", "--tail", "30", check=False).stdout[-6000:]
            raise AssertionError(f"not healthy after {timeout}s: {last}\n{logs}") from None

    def busy_ports(self) -> list[int]:
        """Published ports something on this host already listens on (none, to start)."""
        return [p for p in self.published_ports() if port_open(p)]

    def down(self) -> None:
        self.compose("down", "-v", "--remove-orphans", timeout=300, check=False)

    # -- calls over the published ports ---------------------------------------------------

    def url(self, port: int, path: str) -> str:
        return f"http://127.0.0.1:{port}{path}"

    def get(self, port: int, path: str, **params: Any) -> dict[str, Any]:
        reply = requests.get(self.url(port, path), params=params, timeout=30)
        body: dict[str, Any] = reply.json()
        return body

    def post(self, port: int, path: str, **body: Any) -> dict[str, Any]:
        reply = requests.post(self.url(port, path), json=body, headers=self.admin, timeout=30)
        answer: dict[str, Any] = reply.json()
        return answer

    def publish(self, topic: str, data: dict[str, Any], **options: Any) -> str:
        answer = self.post(4300, "/baichuan/publish", topic=topic, data=data, **options)
        assert answer["stat"] == "OK", answer
        msg_id: str = answer["msg_id"]
        return msg_id

    def message(self, msg_id: str) -> dict[str, Any]:
        return self.get(4300, "/baichuan/msg", msg_id=msg_id)

    def flow_ended(self, job_id: int, port: int = 4700) -> dict[str, Any]:
        """A xingqiao flow's detail once it finished or failed."""
        def ended() -> dict[str, Any] | None:
            detail: dict[str, Any] = self.get(port, "/xingqiao/get_job_detail",
                                              job_id=job_id)["data"]
            return detail if detail["job_status"] in ("finished", "failed") else None

        return wait_until(ended, 60, interval=0.5, what=f"flow {job_id} ended")

    def fires(self, job_id: str, cmd: str, count: int = 1, port: int = 4100,
              history_port: int = 4100) -> list[dict[str, Any]]:
        """Add an every-second ruqi job running ``cmd``; its ``ok`` runs (history read on
        ``history_port``: another replica, or the same) once there are ``count``; the job
        is removed again."""
        added = self.post(port, "/ruqi/add_job", job_trigger="interval", job_id=job_id,
                          job_name=job_id, rule="1s", cmd=cmd)
        assert added["stat"] == "OK", added

        def ok_runs() -> list[dict[str, Any]] | None:
            rows = self.get(history_port, "/ruqi/get_history", job_id=job_id,
                            page_size=50)["data"]["list"]
            runs = [r for r in rows if r["status"] == "ok"]
            return runs if len(runs) >= count else None

        try:
            return wait_until(ok_runs, 60, interval=0.5, what=f"{count} fires of {job_id}")
        finally:
            assert self.post(port, "/ruqi/remove_job", job_id=job_id)["stat"] == "OK"


def running_fleet(file: str, project: str, env_file: Path, label: str,
                  extra_files: list[Path] | None = None,
                  env: dict[str, str] | None = None) -> Iterator[ComposeFleet]:
    """A module fixture's body: build and ``up -d`` one compose file (and overrides),
    yield it with every container healthy, then ``down -v``."""
    fleet = ComposeFleet(file, project, env_file, extra_files, env)
    fleet.down()  # the leftovers of an interrupted run
    busy = fleet.busy_ports()
    assert not busy, f"ports {busy} are taken on this host: stop what listens there first"
    try:
        with timed(f"{label}: build"):
            fleet.compose("build", timeout=1800)
        with timed(f"{label}: up to every container healthy"):
            fleet.compose("up", "-d", timeout=600)
            fleet.wait_healthy()
        yield fleet
    finally:
        with timed(f"{label}: down -v"):
            fleet.down()
