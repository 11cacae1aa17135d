"""The fleet for the fuzz tests: every service of deploy/fleet.toml, one process each.

Each runs under ``butterfly serve`` (real gunicorn) on a free port, against a private
redis-server, with an admin token, so the fuzzer reaches admin routes too. A service
added to fleet.toml is fuzzed from that day on, with no change here.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

from fleetdef import Instance, load_fleet  # noqa: E402

TOKEN = "fuzz-admin-token-0123456789abcdef"

#: Extra environment per service while fuzzing: nothing the fuzzer creates may act on the
#: world (a generated ruqi job must never fire).
#: canghai signs sessions with the fleet secret and refuses to start without one.
SECRET_KEY = "fuzz-secret-key-0123456789abcdef0123456789"
#: the console's first admin, so test_fuzz_console.py can sign in
CANGHAI_ADMIN_PASSWORD = "fuzz-console-admin-1"
FUZZ_ENV: dict[str, dict[str, str]] = {"ruqi": {"RUQI_ENGINE": "0"},
                                       # plain http: a Secure cookie would never return
                                       "canghai": {"BUTTERFLY_SECRET_KEY": SECRET_KEY,
                                                   "CANGHAI_COOKIE_SECURE": "0",
                                                   "CANGHAI_ADMIN_PASSWORD":
                                                       CANGHAI_ADMIN_PASSWORD},
                                       # a watch long-polls: keep it inside the fuzzer's wait
                                       "wuxing": {"WUXING_WATCH_MAX_TIMEOUT": "1"}}


def services() -> list[Instance]:
    """One instance per service (replicas add nothing to an API fuzz)."""
    seen: dict[str, Instance] = {}
    for inst in load_fleet():
        seen.setdefault(inst.service, inst)
    return list(seen.values())
