"""BUTTERFLY_REDIS_URL names database 0 or nothing: another database is refused at start.

Twemproxy and Redis Cluster have no SELECT, so a non-zero database would work on a plain
Redis and break the day a proxy is put in front of it.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from butterfly_common.settings import SettingsError, load_settings


@pytest.mark.parametrize("url", [
    "redis://127.0.0.1:6379", "redis://127.0.0.1:6379/", "redis://127.0.0.1:6379/0",
    "redis://:pw@127.0.0.1:6379/0?db=0", "rediss://cache.example:6380/0",
    "redis+cluster://127.0.0.1:7000/0", "unix:///run/redis.sock", "unix:///run/redis.sock?db=0",
])
def test_database_zero_is_accepted(url):
    assert load_settings({"BUTTERFLY_REDIS_URL": url}).redis_url == url


@pytest.mark.parametrize(("url", "db"), [
    ("redis://127.0.0.1:6379/3", "3"), ("redis://127.0.0.1:6379/3/", "3"),
    ("redis://127.0.0.1:6379/0?db=2", "2"), ("rediss://cache.example:6380/15", "15"),
    ("redis+cluster://127.0.0.1:7000/1", "1"), ("unix:///run/redis.sock?db=4", "4"),
    ("redis://127.0.0.1:6379/zero", "zero"),
])
def test_other_databases_are_refused(url, db):
    with pytest.raises(SettingsError) as info:
        load_settings({"BUTTERFLY_REDIS_URL": url})
    message = str(info.value)
    assert message.startswith(f"BUTTERFLY_REDIS_URL: database {db!r} is not supported, only 0")
    assert "no SELECT" in message


def test_serve_refuses_a_non_zero_database_before_listening():
    env = {**os.environ, "BUTTERFLY_REDIS_URL": "redis://127.0.0.1:6379/3"}
    result = subprocess.run([sys.executable, "-m", "butterfly_common.cli", "serve", "core"],
                            env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.startswith("butterfly: configuration error: BUTTERFLY_REDIS_URL: "
                                    "database '3' is not supported")
    assert "Traceback" not in result.stderr and "Listening" not in result.stderr
