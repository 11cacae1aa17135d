"""The butterfly command: call (under a trace), routes, usage."""

from __future__ import annotations

import os
import subprocess
import sys

from butterfly_common.testing import wait_until


def run(*args: str, cwd=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "BUTTERFLY_LOG_DIR": str(cwd or "."), "NO_COLOR": "1"}
    return subprocess.run([sys.executable, "-m", "butterfly_common.cli", *args], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=60)


def test_call_prints_trace_and_return(tmp_path):
    result = run("call", "/demo_api/hello", "helloworld", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    expected = "('OK', {'str_info': 'helloworld'}, [('demo', '1.0.1')])"
    assert result.stdout.splitlines()[1] == expected
    assert "Starting var:.. str_info = 'helloworld'" in result.stderr
    assert "Return value:.. ('OK', {'str_info': 'helloworld'}" in result.stderr
    assert "Elapsed time" in result.stderr


def test_call_named_args_and_coercion(tmp_path):
    result = run("call", "/demo_httpapi/status", "code=418", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "(418, {'code': 418})" in result.stdout


def test_call_bad_args_print_usage(tmp_path):
    result = run("call", "/demo_api/hello", cwd=tmp_path)
    assert result.returncode == 2
    assert "missing: str_info" in result.stdout
    assert "butterfly call /demo_api/hello 'str_info'" in result.stdout


def test_call_without_args_lists_every_route(tmp_path):
    result = run("call", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout.startswith("Usage:")
    assert "  butterfly call /demo_api/hello 'str_info'" in result.stdout.splitlines()
    assert "  butterfly call /demo_httpapi/status 'code=200'" in result.stdout.splitlines()


def test_call_unknown_route(tmp_path):
    result = run("call", "/nope/nothing", cwd=tmp_path)
    assert result.returncode == 2 and "unknown route '/nope/nothing'" in result.stdout


def test_routes_lists_kinds_and_flags(tmp_path):
    result = run("routes", "core", cwd=tmp_path)
    assert result.returncode == 0
    lines = [line.split("\t") for line in result.stdout.splitlines()]
    by_path = {line[3]: line for line in lines}
    assert by_path["/demo_api/hello"][2] == "api" and by_path["/demo_api/hello"][5] == "topic"
    assert by_path["/stackdump/stackdump"][5] == "admin"
    assert by_path["/demo_download/download_file"][2] == "download"


def test_healthcheck_of_a_worker_follows_its_consumer(tmp_path, redis_server):
    """A `butterfly worker` serves no HTTP: ``healthcheck --worker`` asks the worker
    registry for a live consumer on this host (what compose's core-worker runs)."""
    env = {**os.environ, "BUTTERFLY_REDIS_URL": redis_server.url,
           "BUTTERFLY_LOG_DIR": str(tmp_path), "NO_COLOR": "1"}

    def check() -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "butterfly_common.cli", "healthcheck",
                               "--worker"], env=env, capture_output=True, text=True,
                              timeout=60)

    none = check()
    assert none.returncode == 1
    assert none.stderr.strip().startswith("butterfly healthcheck: no live consumer on ")
    worker = subprocess.Popen([sys.executable, "-m", "butterfly_common.cli", "worker", "core"],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: check().returncode == 0, 30, interval=0.2, what="worker healthy")
    finally:
        worker.terminate()
        assert worker.wait(timeout=30) == 0
    assert check().returncode == 1  # a clean stop unregisters it at once
