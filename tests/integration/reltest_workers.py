"""Consumer processes of ``reltest_app`` for the queue tests: start them, stop them all."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def start_worker(url: str, logdir: str, *, lease: str | None = None,
                 max_idle: str = "0.1") -> subprocess.Popen:
    """``butterfly worker reltest_app:service`` on ``url`` with 8 threads (``lease``:
    ``BUTTERFLY_MQ_LEASE``, default the framework's)."""
    env = {**os.environ, "BUTTERFLY_REDIS_URL": url, "BUTTERFLY_CONSUME_THREADS": "8",
           "BUTTERFLY_CONSUME_MAX_IDLE": max_idle, "BUTTERFLY_LOG_DIR": logdir,
           "PYTHONPATH": str(HERE)}
    if lease is not None:
        env["BUTTERFLY_MQ_LEASE"] = lease
    return subprocess.Popen([sys.executable, "-m", "butterfly_common.cli", "worker",
                             "reltest_app:service"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def stop_workers(workers: list[subprocess.Popen]) -> None:
    """SIGTERM every worker (woken first if frozen), SIGKILL any still up after 30 s: no
    consumer may outlive its test (a later test's server could reuse its port)."""
    for worker in workers:
        worker.send_signal(signal.SIGCONT)
        worker.terminate()
    for worker in workers:
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(10)
