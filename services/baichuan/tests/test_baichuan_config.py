"""baichuan's declared config: validated once at start, read by handlers from the runtime."""

from __future__ import annotations

import os
import subprocess
import sys

from butterfly_baichuan.config import BaichuanConfig
from butterfly_common import runtime


def test_serve_refuses_a_bad_variable_before_starting(tmp_path):
    env = {**os.environ, "BAICHUAN_MAX_WAIT": "-1", "BUTTERFLY_LOG_DIR": str(tmp_path),
           "BUTTERFLY_DATA_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "butterfly_common.cli", "serve", "baichuan"],
                          env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2, done
    assert "configuration error" in done.stderr and "BAICHUAN_MAX_WAIT" in done.stderr


def test_handlers_read_the_runtime_config(app_for):
    client = app_for(BAICHUAN_MAX_WAIT="0.05", BAICHUAN_MAX_MESSAGE_BYTES="64")
    assert runtime.get_config(BaichuanConfig).max_wait == 0.05
    assert runtime.service_config() is runtime.get_config(BaichuanConfig)
    response = client.post("/baichuan/publish", json={"topic": "/demo_api/hello",
                                                      "data": {"x": "y" * 100},
                                                      "force": True})
    assert response.status_code == 413 and "64" in response.headers["x-reason"]


def test_max_waiters_defaults_to_half_the_threads():
    assert BaichuanConfig.from_env({}).max_waiters == 4
    assert BaichuanConfig.from_env({"BUTTERFLY_THREADS": "20"}).max_waiters == 10
    assert BaichuanConfig.from_env({"BUTTERFLY_THREADS": "1"}).max_waiters == 1
    assert BaichuanConfig.from_env({"BUTTERFLY_THREADS": "20",
                                    "BAICHUAN_MAX_WAITERS": "3"}).max_waiters == 3
