"""Commands: HTTP against a real local server, the script allow-list, argv without a shell."""

from __future__ import annotations

import os
import socket
import stat
import sys
import threading
import time
from pathlib import Path

import pytest

from butterfly_common import Refusal, runtime
from butterfly_common.settings import load_settings
from butterfly_ruqi.commands import parse_command, run_command, split_body


@pytest.fixture(autouse=True)
def settings(tmp_path: Path):
    """HTTP jobs may call the local test server (RUQI_HTTP_ALLOW=127.0.0.1)."""
    runtime.configure(load_settings({"RUQI_HTTP_ALLOW": "127.0.0.1",
                                     "BUTTERFLY_DATA_DIR": str(tmp_path / "data")}))


def run(cmd: str, script_dir: str | None = None, timeout: float = 5.0):
    return run_command(cmd, script_dir=script_dir, timeout=timeout, reqid="0123456789ABCDEF",
                       job_id="j1", scheduled=1700000000.5)


def test_split_body_tolerates_hash_in_url_and_json():
    assert split_body("http://h/p#frag") == ("http://h/p#frag", {})
    assert split_body('http://h/p#{"a": "x#{y}"}') == ("http://h/p", {"a": "x#{y}"})
    assert split_body('http://h/p#{bad#{"a": 1}') == ("http://h/p#{bad", {"a": 1})
    assert split_body('/app/hello#{"str_info": "tick"}') == ("/app/hello", {"str_info": "tick"})


def test_http_post_success_carries_body_and_reqid(callee):
    out = run(f'{callee.url}/ok#{{"k": "v"}}')
    assert out.success, out.output
    call = callee.calls[-1]
    assert call["path"] == "/ok" and call["body"] == '{"k": "v"}'
    assert call["reqid"] == "0123456789ABCDEF"
    assert call["job"] == "j1" and call["ms"] == 1700000000500


def test_http_request_head_names_host_type_agent_and_closes(callee):
    assert run(f"{callee.url}/h").success
    headers = callee.calls[-1]["headers"]
    assert headers["host"] == callee.url.removeprefix("http://")
    assert headers["user-agent"] == "butterfly-ruqi"
    assert headers["content-type"] == "application/json"
    assert headers["content-length"] == "2" and headers["connection"] == "close"


def test_http_header_value_outside_plain_ascii_goes_through_http_client(callee):
    # the one-piece head takes printable ASCII only; http.client encodes (latin-1) or
    # refuses anything else itself, so a CR/LF can never split the head
    out = run_command(f"{callee.url}/h", script_dir=None, timeout=5.0, reqid="r\u00e9q",
                      job_id="j1", scheduled=1700000000.5)
    assert out.success, out.output
    assert callee.calls[-1]["reqid"].encode("latin-1") == "r\u00e9q".encode("latin-1")
    out = run_command(f"{callee.url}/h", script_dir=None, timeout=5.0, reqid="a\r\nX-Evil: 1",
                      job_id="j1", scheduled=1700000000.5)
    assert not out.success and "ValueError" in out.output
    assert "x-evil" not in callee.calls[-1]["headers"]


@pytest.mark.parametrize("query", ["status=500", "stat=ERR_BUSY", "status=404"])
def test_http_failure_is_non_2xx_or_a_stat_other_than_ok(callee, query):
    out = run(f"{callee.url}/x?{query}")
    assert not out.success
    assert out.output.startswith("HTTP ")


def test_http_plain_2xx_without_envelope_is_success(callee):
    # a non-butterfly callee: 2xx is enough
    assert run(f"{callee.url}/x?stat=OK").success


def test_http_timeout_and_refused(callee):
    out = run(f"{callee.url}/x?sleep=2", timeout=0.3)
    assert not out.success and out.output.startswith("TimeoutError"), out.output
    out = run("http://127.0.0.1:1/nothing")
    assert not out.success and out.output.startswith("ConnectionRefusedError"), out.output


def test_http_answer_that_stalls_half_way_is_a_timeout_not_an_end():
    # the fast path reads a blocking socket whose kernel timeout says EAGAIN; read as the
    # end of the answer, a stall after the status line would pass for a cut-off answer
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        release = threading.Event()

        def answer_half() -> None:
            conn, _ = server.accept()
            with conn:
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
                release.wait(10)

        thread = threading.Thread(target=answer_half, daemon=True)
        thread.start()
        started = time.monotonic()
        out = run(f"http://127.0.0.1:{port}/x", timeout=0.3)
        release.set()
        thread.join(10)
    assert not out.success and out.output.startswith("TimeoutError"), out.output
    assert time.monotonic() - started < 5


def test_scripts_are_off_without_script_dir():
    with pytest.raises(Refusal) as err:
        parse_command("bash job.sh", None)
    assert err.value.stat == "ERR_SCRIPT_DISABLED"
    out = run("bash job.sh")
    assert not out.success and "ERR_SCRIPT_DISABLED" in out.output


@pytest.fixture
def script_dir(tmp_path: Path) -> Path:
    root = tmp_path / "scripts"
    root.mkdir()
    (root / "echo.py").write_text(
        "import os, sys\nprint('cwd=' + os.getcwd())\nprint('args=' + repr(sys.argv[1:]))\n"
        "print('reqid=' + os.environ['BUTTERFLY_REQID'])\n")
    (root / "fail.sh").write_text("echo failing\nexit 3\n")
    (root / "sleep.py").write_text("import time\ntime.sleep(5)\n")
    exe = root / "tool"
    exe.write_text(f"#!{sys.executable}\nimport sys\nprint('tool', sys.argv[1:])\n")
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    (tmp_path / "outside.sh").write_text("echo outside\n")
    return root


@pytest.mark.parametrize("cmd", ["bash ../outside.sh", "bash /etc/passwd",
                                 "python ../../../usr/bin/env", "../outside.sh",
                                 "bash missing.sh", "python"])
def test_script_path_must_stay_inside_the_dir(script_dir, cmd):
    with pytest.raises(Refusal) as err:
        parse_command(cmd, str(script_dir))
    assert err.value.stat == "ERR_SCRIPT_PATH"


def test_script_symlink_out_of_the_dir_is_refused(script_dir):
    (script_dir / "link.sh").symlink_to(script_dir.parent / "outside.sh")
    with pytest.raises(Refusal):
        parse_command("bash link.sh", str(script_dir))


def test_script_runs_as_argv_in_its_dir_never_a_shell(script_dir, tmp_path):
    marker = tmp_path / "pwned"
    out = run(f"python echo.py 'a b' '; touch {marker}' '$(id)'", str(script_dir))
    assert out.success, out.output
    assert f"cwd={script_dir.resolve()}" in out.output
    assert f"args=['a b', '; touch {marker}', '$(id)']" in out.output
    assert "reqid=0123456789ABCDEF" in out.output
    assert not marker.exists()


def test_executable_script_and_exit_code(script_dir):
    assert run("tool x", str(script_dir)).output.endswith("tool ['x']\n")
    out = run("bash fail.sh", str(script_dir))
    assert not out.success and out.output.startswith("retcode=3")


def test_script_timeout_is_killed(script_dir):
    out = run("python sleep.py", str(script_dir), timeout=0.3)
    assert not out.success and out.output.startswith("retcode=124")


def test_cmd_length_limit_and_topic_names():
    with pytest.raises(Refusal) as err:
        parse_command("http://x/" + "a" * 5000, None)
    assert err.value.stat == "ERR_CMD_TOO_LONG"
    assert parse_command('/demo_api/hello#{"str_info": "x"}', None).kind == "topic"
    with pytest.raises(Refusal):
        parse_command("/not a topic", None)


def test_output_is_truncated(script_dir):
    (script_dir / "big.py").write_text("print('x' * 10000)\n")
    out = run("python big.py", str(script_dir))
    assert out.success and len(out.output) == 4096


def test_not_executable_script_refused(script_dir):
    (script_dir / "plain").write_text("echo hi\n")
    os.chmod(script_dir / "plain", 0o644)
    with pytest.raises(Refusal):
        parse_command("plain", str(script_dir))
