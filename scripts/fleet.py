"""`make run`: every installed service as a local process, logs prefixed and coloured.

Uses the Redis at BUTTERFLY_REDIS_URL when one answers there, else starts a throw-away
redis-server on a free port. Processes run under honcho, so Ctrl-C stops them all.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

from dotenv import dotenv_values

from butterfly_common.redis_client import make_redis
from butterfly_common.service import installed_services
from butterfly_common.settings import DEFAULT_REDIS_URL
from butterfly_common.testing import free_port

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def redis_answers(url: str) -> bool:
    try:
        return bool(make_redis(url, socket_timeout=1, retries=0).ping())
    except Exception:
        return False


def main() -> int:
    env = {**dotenv_values(ROOT / ".env"), **os.environ}
    env.setdefault("BUTTERFLY_LOG_DIR", "-")
    env.setdefault("BUTTERFLY_DATA_DIR", str(ROOT / "var" / "data"))
    lines = []
    url = env.get("BUTTERFLY_REDIS_URL") or DEFAULT_REDIS_URL
    if not redis_answers(url):
        port = free_port()
        (ROOT / "var" / "redis").mkdir(parents=True, exist_ok=True)
        lines.append(f"redis: redis-server --bind 127.0.0.1 --port {port} --save '' "
                     f"--appendonly no --dir {shlex.quote(str(ROOT / 'var' / 'redis'))}")
        url = f"redis://127.0.0.1:{port}/0"
        print(f"no Redis answered at {env.get('BUTTERFLY_REDIS_URL') or DEFAULT_REDIS_URL}; "
              f"starting one at {url}")
    env["BUTTERFLY_REDIS_URL"] = url
    print(f"{'service':<10} {'url':<28} health")
    for service in installed_services().values():
        lines.append(f"{service.name}: {shlex.quote(str(BIN / 'butterfly'))} serve {service.name}")
        base = f"http://127.0.0.1:{service.port}"
        print(f"{service.name:<10} {base:<28} {base}/healthz")
    procfile = ROOT / "var" / "Procfile"
    procfile.parent.mkdir(parents=True, exist_ok=True)
    procfile.write_text("\n".join(lines) + "\n")
    honcho = str(BIN / "honcho")
    # argv list, no shell; honcho replaces this process so Ctrl-C reaches it directly
    os.execve(honcho, [honcho, "-f", str(procfile), "-d", str(ROOT), "start"],  # noqa: S606
              {k: v for k, v in env.items() if v is not None})
    return 0


if __name__ == "__main__":
    sys.exit(main())
