"""`make run`: the fleet of deploy/fleet.toml as local processes, logs prefixed and coloured.

Uses the Redis at BUTTERFLY_REDIS_URL when one answers there, else starts a throw-away
redis-server on a free port; the database defaults to SQLite under var/data. Processes run
under honcho, so Ctrl-C stops them all.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

from dotenv import dotenv_values
from fleetdef import ROOT, load_fleet

from butterfly_common.redis_client import make_redis
from butterfly_common.settings import DEFAULT_REDIS_URL
from butterfly_common.testing import free_port

BIN = Path(sys.executable).parent


def redis_answers(url: str) -> bool:
    try:
        return bool(make_redis(url, socket_timeout=1, retries=0).ping())
    except Exception:
        return False


def procfile_lines(env: dict[str, str]) -> list[str]:
    """One honcho line per process (names without dashes: honcho's own convention)."""
    lines = []
    url = env.get("BUTTERFLY_REDIS_URL") or DEFAULT_REDIS_URL
    if not redis_answers(url):
        port = free_port()
        data = ROOT / "var" / "redis"
        data.mkdir(parents=True, exist_ok=True)
        lines.append(f"redis: redis-server --bind 127.0.0.1 --port {port} --save '' "
                     f"--appendonly no --dir {shlex.quote(str(data))}")
        print(f"no Redis answered at {url}; starting one on port {port}")
        url = f"redis://127.0.0.1:{port}/0"
    env["BUTTERFLY_REDIS_URL"] = url
    print(f"{'process':<10} {'url':<24} health")
    for inst in load_fleet():
        settings = {**inst.env, "BUTTERFLY_PORT": str(inst.port)}
        assigns = " ".join(f"{k}={shlex.quote(v)}" for k, v in settings.items())
        argv = " ".join(shlex.quote(a) for a in [str(BIN / inst.argv[0]), *inst.argv[1:]])
        lines.append(f"{inst.name.replace('-', '')}: env {assigns} {argv}")
        base = f"http://127.0.0.1:{inst.port}"
        print(f"{inst.name:<10} {base:<24} {base}/healthz")
    return lines


def main() -> int:
    env = {k: v for k, v in {**dotenv_values(ROOT / ".env"), **os.environ}.items()
           if v is not None}
    env.setdefault("BUTTERFLY_LOG_DIR", "-")
    env.setdefault("BUTTERFLY_DATA_DIR", str(ROOT / "var" / "data"))
    # a local fleet is development: canghai then signs with a generated key kept in the
    # data dir when BUTTERFLY_SECRET_KEY is unset (production refuses to start without it)
    env.setdefault("BUTTERFLY_ENV", "development")
    lines = procfile_lines(env)
    procfile = ROOT / "var" / "Procfile"
    procfile.parent.mkdir(parents=True, exist_ok=True)
    procfile.write_text("\n".join(lines) + "\n")
    honcho = str(BIN / "honcho")
    # argv list, no shell; honcho replaces this process so Ctrl-C reaches it directly
    os.execve(honcho, [honcho, "-f", str(procfile), "-d", str(ROOT), "start"], env)  # noqa: S606
    return 0


if __name__ == "__main__":
    sys.exit(main())
