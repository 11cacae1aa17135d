"""Issue 12, defect 4: scripts get a minimal environment, never the service's secrets."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from butterfly_common import db, runtime
from butterfly_common.settings import SettingsError, load_settings
from butterfly_common.testing import wait_until
from butterfly_ruqi import jobs
from butterfly_ruqi.commands import run_command
from butterfly_ruqi.models import History
from butterfly_ruqi.safety import Safety

SECRET = "admin-secret-token-0123456789"
ENV_PY = "import os\nfor k in sorted(os.environ): print(k + '=' + os.environ[k])\n"


@pytest.fixture
def scripts(tmp_path: Path, monkeypatch) -> Path:
    root = tmp_path / "scripts"
    root.mkdir()
    (root / "env.py").write_text(ENV_PY)
    # the service's own environment holds secrets
    monkeypatch.setenv("BUTTERFLY_ADMIN_TOKEN", SECRET)
    monkeypatch.setenv("BUTTERFLY_DB_URL", "mysql://root:hunter2@db/x")
    monkeypatch.setenv("MY_TOOL_HOME", "/opt/tool")
    return root


def printed(output: str) -> dict[str, str]:
    lines = output.splitlines()[1:]
    return dict(line.split("=", 1) for line in lines if "=" in line)


def test_defect_04_scripts_get_a_minimal_environment(scripts, tmp_path):
    runtime.configure(load_settings({"BUTTERFLY_DATA_DIR": str(tmp_path / "d")}))
    out = run_command("python env.py", script_dir=str(scripts), timeout=10,
                      reqid="0123456789ABCDEF", job_id="e1", scheduled=1700000000.0)
    assert out.success, out.output
    env = printed(out.output)
    assert SECRET not in out.output and "hunter2" not in out.output
    assert {"BUTTERFLY_ADMIN_TOKEN", "BUTTERFLY_DB_URL", "MY_TOOL_HOME"}.isdisjoint(env)
    assert env["RUQI_JOB_ID"] == "e1" and env["BUTTERFLY_REQID"] == "0123456789ABCDEF"
    assert env["RUQI_SCHEDULED_MS"] == "1700000000000"
    assert set(env) - {"RUQI_JOB_ID", "BUTTERFLY_REQID", "RUQI_SCHEDULED_MS"} <= {
        "PATH", "LANG", "HOME", "TZ", "LC_CTYPE"}  # LC_CTYPE: Python's own UTF-8 mode


def test_defect_04_pass_list_adds_named_variables_only(scripts, tmp_path):
    runtime.configure(load_settings({"BUTTERFLY_DATA_DIR": str(tmp_path / "d"),
                                     "RUQI_SCRIPT_ENV_PASS": "MY_TOOL_HOME"}))
    out = run_command("python env.py", script_dir=str(scripts), timeout=10,
                      reqid="0123456789ABCDEF", job_id="e1", scheduled=1700000000.0)
    env = printed(out.output)
    assert env["MY_TOOL_HOME"] == "/opt/tool" and "BUTTERFLY_ADMIN_TOKEN" not in env


@pytest.mark.parametrize("name", ["BUTTERFLY_ADMIN_TOKEN", "BUTTERFLY_OPERATOR_TOKEN",
                                  "AWS_SECRET_ACCESS_KEY", "BUTTERFLY_DB_URL",
                                  "BUTTERFLY_REDIS_URL", "DB_PASSWORD", "bad-name"])
def test_defect_04_secrets_cannot_be_passed(name):
    with pytest.raises(SettingsError, match="RUQI_SCRIPT_ENV_PASS"):
        Safety.from_env({"RUQI_SCRIPT_ENV_PASS": f"LANG,{name}"})


def test_defect_04_no_secret_in_history(redis_server, scripts, tmp_path, configure_runtime,
                                        engines, monkeypatch):
    from butterfly_common.redis_client import make_redis

    make_redis(redis_server.url).flushall()
    configure_runtime(redis_server.url, f"sqlite:///{tmp_path / 'env.db'}",
                      RUQI_SCRIPT_DIR=str(scripts))
    jobs.add_job("interval", "envjob", "env", "python env.py", "1h", jobs.Options())
    engines.start(1, script_dir=str(scripts))
    jobs.run_job("envjob", "0123456789ABCDEF")

    def rows() -> list[History]:
        with db.database.connection_context():
            return list(History.select().where(History.job_id == "envjob"))

    (row,) = wait_until(rows, 15, what="the script's history row")
    assert row.status == "ok", row.cmd_output
    assert "RUQI_JOB_ID=envjob" in row.cmd_output
    assert SECRET not in row.cmd_output and "hunter2" not in row.cmd_output
    assert sys.executable  # the interpreter ran from PATH-independent sys.executable


PEEK = "cat /proc/$PPID/environ | tr '\\0' '\\n'\necho uid=$(id -u)\n"


def test_a_script_user_cannot_read_the_services_environment(monkeypatch):
    """A script could print its parent's environment (the admin token included) into
    public history through /proc/$PPID/environ; under RUQI_SCRIPT_USER it cannot."""
    import os
    import pwd
    import shutil
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="ruqi-scripts-", dir="/tmp"))
    try:
        root.chmod(0o755)  # the script user reads it, nothing more
        (root / "peek.sh").write_text(PEEK)
        (root / "peek.sh").chmod(0o644)

        def peek(**env: str) -> str:
            runtime.configure(load_settings({"BUTTERFLY_DATA_DIR": str(root / "d"), **env}))
            return run_command("sh peek.sh", script_dir=str(root), timeout=10,
                               reqid="0123456789ABCDEF", job_id="p1",
                               scheduled=1700000000.0).output

        parent = next(k for k in os.environ if k.isidentifier())
        assert f"{parent}=" in peek()  # the hole: the parent's environment, in history
        if os.geteuid() != 0:  # only root may start a process as another user
            with pytest.raises(SettingsError, match="cannot start processes as another"):
                peek(RUQI_SCRIPT_USER="nobody")
            return
        out = peek(RUQI_SCRIPT_USER="nobody")
        assert "Permission denied" in out and f"{parent}=" not in out
        assert f"uid={pwd.getpwnam('nobody').pw_uid}" in out
        with pytest.raises(SettingsError, match="RUQI_SCRIPT_USER"):
            Safety.from_env({"RUQI_SCRIPT_USER": "no-such-user-here"})
    finally:
        shutil.rmtree(root, ignore_errors=True)
