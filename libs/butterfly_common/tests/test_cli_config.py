"""``butterfly config``: every setting with its value and source, secrets masked."""

from __future__ import annotations

import os
import subprocess
import sys

TOKEN = "admin-token-0123456789"
PASSWORD = "redis-pass-42"


def butterfly_config(*services: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("BUTTERFLY_", "RUQI_", "CANGHAI_", "WUXING_", "BAICHUAN_",
                                  "XINGQIAO_"))}
    return subprocess.run([sys.executable, "-m", "butterfly_common.cli", "config", *services],
                          env={**clean, **env}, capture_output=True, text=True, timeout=60,
                          check=False)


def lines_of(out: str) -> dict[str, str]:
    """``{"RUQI_WORKERS": "4 (env)"}`` from the printed table."""
    rows = {}
    for line in out.splitlines():
        if " = " in line:
            name, _, rest = line.partition(" = ")
            rows[name.strip()] = " ".join(rest.split())
    return rows


def test_prints_framework_and_every_service_with_the_source(tmp_path):
    done = butterfly_config(RUQI_WORKERS="4", BUTTERFLY_ADMIN_TOKEN=TOKEN,
                            BUTTERFLY_REDIS_URL=f"redis://:{PASSWORD}@127.0.0.1:6379/0",
                            CANGHAI_ADMIN_PASSWORD="first-admin-pw",
                            BUTTERFLY_DATA_DIR=str(tmp_path))
    assert done.returncode == 0, done.stderr
    for section in ("# butterfly", "# ruqi", "# canghai", "# xingqiao", "# wuxing",
                    "# baichuan", "# core"):
        assert section in done.stdout.splitlines()
    rows = lines_of(done.stdout)
    assert rows["RUQI_WORKERS"] == "4 (env)"
    assert rows["RUQI_POLL_INTERVAL"] == "0.2 (default)"
    assert rows["BUTTERFLY_THREADS"] == "8 (default)"
    assert rows["BUTTERFLY_ADMIN_TOKEN"] == "**** (env)"
    assert rows["CANGHAI_ADMIN_PASSWORD"] == "**** (env)"
    assert rows["BUTTERFLY_REDIS_URL"] == "redis://:****@127.0.0.1:6379/0 (env)"
    for secret in (TOKEN, PASSWORD, "first-admin-pw"):
        assert secret not in done.stdout + done.stderr


def test_only_the_named_services_and_their_port():
    done = butterfly_config("ruqi")
    assert done.returncode == 0, done.stderr
    rows = lines_of(done.stdout)
    assert "RUQI_OVERLAP" in rows and not any(n.startswith("CANGHAI_") for n in rows)
    assert rows["BUTTERFLY_PORT"] == "4100 (default)"


def test_a_bad_value_exits_2_with_one_line_naming_it():
    done = butterfly_config(XINGQIAO_RESULT_TTL="5")
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.strip().splitlines() == [
        "butterfly: configuration error: XINGQIAO_RESULT_TTL='5': expected a number >= 60"]


def test_a_bad_framework_value_and_an_unknown_service_exit_2():
    done = butterfly_config(BUTTERFLY_WORKERS="many")
    assert done.returncode == 2 and "BUTTERFLY_WORKERS" in done.stderr
    done = butterfly_config("nosuch")
    assert done.returncode == 2 and "unknown service 'nosuch'" in done.stderr
