"""The first run, the parts that need no running fleet: make's target list, the one
`./butterfly` form of the README and the docs pages, what `make run` refuses before it
starts anything, and how it installs a missing redis-server
(tests/integration/test_first_run.py runs the fleet)."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from butterfly_common.cli import build_parser
from butterfly_common.testing import free_port

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

import devenv  # noqa: E402
import fleet  # noqa: E402

README = (ROOT / "README.md").read_text(encoding="utf-8")
#: What a user reads: the README and every page of the documentation site (docs/).
PAGES = {path.relative_to(ROOT).as_posix(): path.read_text(encoding="utf-8")
         for path in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]}
#: Pages about the container image and the code, where the command is the image's plain
#: `butterfly` (`butterfly worker core` in compose); every other page is followed in a checkout.
IMAGE_PAGES = {"docs/deploy.md", "docs/production.md", "docs/development.md",
               "docs/benchmarks.md", "docs/performance.md", "docs/architecture.md"}


def clean_env(**extra: str) -> dict[str, str]:
    """The environment of a new user's shell: no BUTTERFLY_* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BUTTERFLY_")}
    return {**env, **extra}


def run_fleet(workdir: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "fleet.py"), "--port-offset",
                           "23000"], cwd=workdir, env=env, capture_output=True, text=True,
                          timeout=120)


def test_make_and_make_help_list_every_target_once():
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8").replace("\\\n", " ")
    phony = re.search(r"^\.PHONY:(.*)$", makefile, re.M).group(1).split()
    plain = subprocess.run(["make", "-s", "-C", str(ROOT)], capture_output=True, text=True,
                           timeout=60)
    helped = subprocess.run(["make", "-s", "-C", str(ROOT), "help"], capture_output=True,
                            text=True, timeout=60)
    assert plain.returncode == helped.returncode == 0
    assert plain.stdout == helped.stdout
    lines = plain.stdout.splitlines()
    assert len(lines) == len(phony)
    for target in phony:
        mine = [line for line in lines if line.split()[:2] == ["make", target]]
        assert len(mine) == 1 and len(mine[0].split()) > 3, target  # a description follows


def test_readme_and_docs_write_the_command_one_way():
    assert {"README.md", "docs/getting-started.md", "docs/cli.md"} <= set(PAGES)
    commands = []
    for name, text in PAGES.items():
        assert ".venv/bin/butterfly call" not in text and "$ butterfly " not in text, name
        commands += re.findall(r"(?m)^\$ (\S*butterfly) ", text)
    assert commands and set(commands) == {"./butterfly"}
    in_checkout = "\n".join(text for name, text in PAGES.items() if name not in IMAGE_PAGES)
    mentions = re.findall(r"`(\S*butterfly) (?:call|publish|worker|routes|help)", in_checkout)
    assert mentions and set(mentions) == {"./butterfly"}
    assert (ROOT / "butterfly").stat().st_mode & stat.S_IXUSR


def test_cli_page_publish_usage_is_the_cli_usage():
    publish = build_parser()._subparsers._group_actions[0].choices["publish"]
    usage = publish.format_usage().removeprefix("usage: ").strip()
    assert "./" + usage in PAGES["docs/cli.md"]
    assert usage.count("'") % 2 == 0


def test_readme_admin_example_reads_the_token_make_run_writes(tmp_path):
    command = "$(sed -n 's/^BUTTERFLY_ADMIN_TOKEN=//p' .env)"
    assert f"export BUTTERFLY_ADMIN_TOKEN={command}" in README
    token = devenv.ensure_admin_token(tmp_path / ".env", {})
    got = subprocess.run(["sed", "-n", "s/^BUTTERFLY_ADMIN_TOKEN=//p", ".env"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=10)
    assert got.stdout.strip() == token


def test_development_token_created_once_and_private(tmp_path):
    path = tmp_path / ".env"
    token = devenv.ensure_admin_token(path, {})
    assert re.fullmatch(r"[0-9a-f]{48}", token)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert devenv.ensure_admin_token(path, {}) is None  # kept, not printed again
    assert devenv.read(path)["BUTTERFLY_ADMIN_TOKEN"] == token
    other = tmp_path / "other.env"
    assert devenv.ensure_admin_token(other, {"BUTTERFLY_ADMIN_TOKEN": "x" * 20}) is None
    assert not other.exists()  # the environment's token wins, nothing written


def test_make_run_refuses_a_non_zero_redis_database(tmp_path):
    result = run_fleet(tmp_path, clean_env(BUTTERFLY_REDIS_URL="redis://127.0.0.1:6399/3"))
    assert result.returncode == 3 and result.stdout == ""
    assert result.stderr.splitlines() == [
        "make run: configuration error: BUTTERFLY_REDIS_URL: database '3' is not supported, "
        "only 0 (Twemproxy and Redis Cluster have no SELECT); use a separate Redis to keep "
        "data apart"]
    assert not (tmp_path / ".env").exists()


def test_make_run_refuses_an_environment_redis_that_does_not_answer(tmp_path):
    port = free_port()
    result = run_fleet(tmp_path, clean_env(BUTTERFLY_REDIS_URL=f"redis://:pw@127.0.0.1:{port}/0"))
    assert result.returncode == 3
    assert result.stderr.splitlines() == [
        f"make run: no Redis answers at 127.0.0.1:{port} (BUTTERFLY_REDIS_URL in your "
        "environment): start it, or unset the variable and make run starts one"]
    assert "pw" not in result.stderr


@pytest.fixture
def no_redis_server_on_path(tmp_path, monkeypatch):
    """A PATH with bash, id and python3 but no redis-server, and an apt-get that records its calls
    and "installs" redis-server by linking the real one in (this machine keeps its own)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "id"):
        (bin_dir / tool).symlink_to(subprocess.run(["which", tool], capture_output=True,
                                                   text=True, check=True).stdout.strip())
    (bin_dir / "python3").symlink_to(os.path.realpath(sys.executable))  # has ensurepip
    real = subprocess.run(["which", "redis-server"], capture_output=True, text=True,
                          check=True).stdout.strip()
    calls = tmp_path / "apt-calls"
    apt = bin_dir / "apt-get"
    apt.write_text("#!/bin/bash\n"
                   f'echo "$*" >> {calls}\n'
                   f'if [ "$1" = install ]; then /bin/ln -s {real} {bin_dir}/redis-server; fi\n')
    apt.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.delenv("BUTTERFLY_REDIS_URL", raising=False)
    return bin_dir, calls


def test_missing_redis_server_is_installed_by_ensure_system_deps(tmp_path,
                                                                 no_redis_server_on_path):
    bin_dir, calls = no_redis_server_on_path
    port = free_port()
    dotenv = {"BUTTERFLY_REDIS_URL": f"redis://127.0.0.1:{port}/0"}  # last run's, gone
    url, child = fleet.choose_redis(dotenv, dotenv, tmp_path)
    assert url == f"redis://127.0.0.1:{port}/0"  # the same port again: .env stays valid
    assert child.argv[:5] == [str(bin_dir / "redis-server"), "--bind", "127.0.0.1", "--port",
                              str(port)]
    apt_calls = calls.read_text().splitlines()
    assert apt_calls[0] == "update -qq"
    assert apt_calls[1].startswith("install ") and apt_calls[1].endswith(" redis-server")


def test_uninstallable_redis_server_stops_with_the_command(tmp_path, no_redis_server_on_path):
    bin_dir, _ = no_redis_server_on_path
    (bin_dir / "apt-get").write_text("#!/bin/bash\nexit 100\n")
    dotenv = {"BUTTERFLY_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
    with pytest.raises(fleet.Refused) as info:
        fleet.choose_redis(dotenv, dotenv, tmp_path)
    assert "run `sudo scripts/ensure-system-deps run`" in str(info.value)
