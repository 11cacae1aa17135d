"""A Docker engine for the container test: started when none runs, and stopped again at
the end when the test started it (`make test` installs Debian's docker.io first).

No container registry is reachable from the machines this runs on, so nothing here pulls
an image: the base images come from :mod:`standins`.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from butterfly_common.testing import wait_until

SBIN = ("/usr/sbin", "/sbin")


def _which(command: str) -> str | None:
    return shutil.which(command) or next(
        (str(Path(d) / command) for d in SBIN if (Path(d) / command).exists()), None)


def engine_answers() -> bool:
    return subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode == 0


class DockerHost:
    """``start()``: an engine answers; ``stop()`` stops the one ``start()`` started."""

    def __init__(self, log: Path) -> None:
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> DockerHost:
        missing = [c for c in ("dockerd", "docker-compose", "debootstrap") if not _which(c)]
        assert not missing, f"{missing} missing: scripts/ensure-system-deps installs them"
        if not engine_answers():
            dockerd = _which("dockerd")
            assert dockerd, "docker.io installed no dockerd"
            with self.log.open("ab") as out:
                self.proc = subprocess.Popen([dockerd], stdout=out, stderr=subprocess.STDOUT,
                                             start_new_session=True)
            wait_until(lambda: self.proc.poll() is not None or engine_answers(), 60,
                       interval=0.5, what="dockerd answering")
            assert self.proc.poll() is None, f"dockerd exited: {self.log.read_text()[-2000:]}"
        return self

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()  # dockerd stops its containers, then exits
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
