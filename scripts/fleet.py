"""`make run`: the fleet of deploy/fleet.toml as local processes, logs prefixed and coloured.

Works in the current directory (the repo root under make): settings come from the
environment, then ``.env``. It

1. stops with one line when a setting is bad or a port of the fleet is taken (naming the
   process holding it), before anything starts;
2. uses the Redis at BUTTERFLY_REDIS_URL when one answers there, else starts a
   redis-server on a free port (installing it with scripts/ensure-system-deps when it is
   missing) and writes its URL to ``.env``, so ``./butterfly`` in another terminal finds
   this fleet;
3. creates a random development BUTTERFLY_ADMIN_TOKEN in ``.env`` unless one is set,
   printed once;
4. runs every process until Ctrl-C, which stops them all gracefully and exits 0.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import devenv
from fleetdef import ROOT, Instance, load_fleet
from ports import holder, listening
from supervise import Child, Supervisor

from butterfly_common.redis_client import make_redis
from butterfly_common.settings import DEFAULT_REDIS_URL, SettingsError, load_settings
from butterfly_common.testing import free_port

BIN = Path(sys.executable).parent
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
REFUSED = 3  # exit code: refused before starting anything, one line on stderr says why


class Refused(Exception):
    """`make run` cannot start: the one line to print."""


def redis_answers(url: str) -> bool:
    try:
        return bool(make_redis(url, socket_timeout=1, retries=0).ping())
    except Exception:
        return False


def where(url: str) -> str:
    """``host:port`` of a URL, never its password."""
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port or 6379}" if parts.hostname else url.split("?")[0]


def ensure_redis_server() -> str:
    """The redis-server program, installed by scripts/ensure-system-deps when missing."""
    found = shutil.which("redis-server")
    if found is None:
        # fixed argv of our own script; it runs apt-get only for what is missing
        subprocess.run([str(ROOT / "scripts" / "ensure-system-deps"), "run"], check=False)  # noqa: S603
        found = shutil.which("redis-server")
    if found is None:
        raise Refused("redis-server is not installed and could not be installed; run "
                      "`sudo scripts/ensure-system-deps run` (or set BUTTERFLY_REDIS_URL to a "
                      "running Redis)")
    return found


def choose_redis(env: dict[str, str], dotenv: dict[str, str],
                 workdir: Path) -> tuple[str, Child | None]:
    """The Redis URL of the fleet, and the redis-server to start for it (None: one answers).

    A URL the user set (environment, or a non-local one in .env) that does not answer is
    refused rather than silently replaced.
    """
    url = env.get("BUTTERFLY_REDIS_URL") or DEFAULT_REDIS_URL
    if redis_answers(url):
        return url, None
    if (os.environ.get("BUTTERFLY_REDIS_URL") or "").strip():
        raise Refused(f"no Redis answers at {where(url)} (BUTTERFLY_REDIS_URL in your "
                      "environment): start it, or unset the variable and make run starts one")
    port = None
    if dotenv.get("BUTTERFLY_REDIS_URL"):
        parts = urlsplit(url)
        if parts.hostname not in LOCAL_HOSTS:
            raise Refused(f"no Redis answers at {where(url)} (BUTTERFLY_REDIS_URL in .env): "
                          "start it, or remove the line and make run starts one")
        if parts.port and not listening(parts.port):
            port = parts.port  # the port of the last run: .env stays as it is
    port = port or free_port()
    data = workdir / "var" / "redis"
    data.mkdir(parents=True, exist_ok=True)
    argv = [ensure_redis_server(), "--bind", "127.0.0.1", "--port", str(port), "--save", "",
            "--appendonly", "no", "--dir", str(data)]
    return f"redis://127.0.0.1:{port}/0", Child("redis", argv, {}, stop_last=True)


def service_children(instances: list[Instance], env: dict[str, str],
                     offset: int = 0) -> list[Child]:
    """One ``butterfly serve <svc>`` per instance, with its port and the fleet's settings."""
    base = dict(env)
    if offset:  # services find each other on the shifted ports
        for inst in instances:
            base.setdefault(f"BUTTERFLY_{inst.service.upper()}_URL",
                            f"http://127.0.0.1:{inst.port}")
    return [Child(inst.name, [str(BIN / inst.argv[0]), *inst.argv[1:]],
                  {**base, **inst.env, "BUTTERFLY_PORT": str(inst.port)})
            for inst in instances]


def healthy(port: int) -> bool:
    try:
        # fixed scheme and host: a process of this fleet
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as reply:
            return reply.status == 200
    except OSError:
        return False


def prepare(workdir: Path, offset: int) -> tuple[list[Instance], list[Child], list[str]]:
    """Everything checked and decided before a process starts: instances, children, and
    the lines to print first. Raises Refused."""
    dotenv_path = workdir / ".env"
    dotenv = devenv.read(dotenv_path)
    env = {**dotenv, **os.environ}
    try:
        load_settings(env)
    except SettingsError as exc:
        raise Refused(f"configuration error: {exc}") from None
    instances = [dataclasses.replace(i, port=i.port + offset) for i in load_fleet()]
    for inst in instances:
        if listening(inst.port):
            raise Refused(f"port {inst.port} ({inst.name}) is in use by {holder(inst.port)}; "
                          "stop it first (is another `make run` running?)")
    notes = []
    url, redis_child = choose_redis(env, dotenv, workdir)
    if redis_child is not None:
        devenv.write(dotenv_path, "BUTTERFLY_REDIS_URL", url)
        notes.append(f"no Redis answered; starting redis-server at {where(url)} "
                     "(BUTTERFLY_REDIS_URL in .env: ./butterfly commands use it)")
    token = devenv.ensure_admin_token(dotenv_path, os.environ)
    if token is not None:
        notes += ["created a development admin token in .env (shown only now):",
                  f"  BUTTERFLY_ADMIN_TOKEN={token}"]
    env = {**devenv.read(dotenv_path), **os.environ, "BUTTERFLY_REDIS_URL": url,
           "PYTHONUNBUFFERED": "1"}
    env.setdefault("BUTTERFLY_HOST", "127.0.0.1")  # a development fleet: this machine only
    env.setdefault("BUTTERFLY_LOG_DIR", "-")
    env.setdefault("BUTTERFLY_DATA_DIR", str(workdir / "var" / "data"))
    # a local fleet is development: canghai then signs with a generated key kept in the
    # data dir when BUTTERFLY_SECRET_KEY is unset (production refuses to start without it)
    env.setdefault("BUTTERFLY_ENV", "development")
    children = service_children(instances, env, offset)
    if redis_child is not None:
        children.insert(0, redis_child)  # with an empty environment: it needs none of it
    return instances, children, notes


def take_the_terminal() -> Callable[[], None]:
    """Make this process the terminal's foreground group, so Ctrl-C reaches it alone and
    not `make` above it: make then sees a clean exit 0, prints nothing and exits 0 too.
    Returns what gives the terminal back. No terminal (tests, CI): nothing to do."""
    try:
        tty = os.open("/dev/tty", os.O_RDWR)
    except OSError:
        return lambda: None
    try:
        before = os.tcgetpgrp(tty)
        if before != os.getpgrp():  # not in the foreground: leave the terminal alone
            raise OSError("background")
        os.setpgid(0, 0)
        old = signal.signal(signal.SIGTTOU, signal.SIG_IGN)
        os.tcsetpgrp(tty, os.getpgrp())
        signal.signal(signal.SIGTTOU, old)
    except OSError:
        os.close(tty)
        return lambda: None

    def give_back() -> None:
        old = signal.signal(signal.SIGTTOU, signal.SIG_IGN)
        with contextlib.suppress(OSError):
            os.tcsetpgrp(tty, before)
        signal.signal(signal.SIGTTOU, old)
        os.close(tty)

    return give_back


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the fleet of deploy/fleet.toml locally.")
    parser.add_argument("--port-offset", type=int, default=0,
                        help="add this to every port of fleet.toml (a second fleet beside one)")
    parser.add_argument("--ready-timeout", type=float, default=120.0,
                        help="seconds to wait for every /healthz before giving up")
    args = parser.parse_args(argv)
    workdir = Path.cwd()
    try:
        instances, children, notes = prepare(workdir, args.port_offset)
    except Refused as exc:
        print(f"make run: {exc}", file=sys.stderr)
        return REFUSED
    give_back = take_the_terminal()
    try:
        return run(Supervisor(children, str(workdir)), instances, notes, args)
    finally:
        give_back()


def run(sup: Supervisor, instances: list[Instance], notes: list[str],
        args: argparse.Namespace) -> int:
    """Start the fleet, report when it is up, stop it on Ctrl-C or when a process dies."""
    sup.install_signal_handlers()
    for note in notes:
        sup.say("make run", note)
    sup.start()
    pending = {i.port for i in instances}

    def all_healthy() -> bool:
        pending.difference_update({port for port in pending if healthy(port)})
        return not pending

    ready = sup.wait(all_healthy, args.ready_timeout)
    if ready:
        sup.say("make run", "the fleet is up (Ctrl-C stops it):")
        for inst in instances:
            sup.say("make run", f"  {inst.name:<12} http://127.0.0.1:{inst.port}")
        sup.wait()
    timed_out = not sup.stopping.is_set()
    rc = sup.stop()
    if timed_out:
        sup.say("make run", f"not every /healthz answered within {args.ready_timeout:g}s")
        rc = 1
    return rc


if __name__ == "__main__":
    sys.exit(main())
