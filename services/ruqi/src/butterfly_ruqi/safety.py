"""ruqi's security settings: where HTTP jobs may go, what scripts see, how much is recorded.

``RUQI_HTTP_ALLOW``        allow-list of HTTP targets (allowlist.py; default ``fleet``)
``RUQI_OUTPUT_MAX_BYTES``  bytes of a fire's output kept in its history row (default 4096,
                           64..60000); the rest is never read into memory
``RUQI_SCRIPT_ENV_PASS``   extra variables passed to scripts (comma list; default none)
``RUQI_SCRIPT_USER``       user (name or uid) scripts run as, so they cannot read the
                           service's own environment through ``/proc/$PPID/environ``

Kept apart from ``config.py`` (the scheduling knobs) because each of these closes a hole
(issue 12, defects 3 and 4) and is read on every fire, not once per engine.
"""

from __future__ import annotations

import os
import pwd
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from butterfly_common.config import Config, SettingsError, setting
from butterfly_common.logs import SECRET
from butterfly_common.runtime import get_config

from .allowlist import AllowList, AllowListError

#: Always passed to scripts (when the service has them), besides the job's own variables.
SCRIPT_BASE_ENV = ("PATH", "LANG", "HOME", "TZ")
#: Never passed, even when listed: URLs of the queue and DB may carry passwords.
NEVER_PASS = ("BUTTERFLY_DB_URL", "BUTTERFLY_REDIS_URL")
#: The history column is a TEXT (64 KiB on MySQL): outputs stay below that.
OUTPUT_MAX_LIMIT = 60_000
_VAR = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _env_pass(name: str, raw: str) -> tuple[str, ...]:
    """``RUQI_SCRIPT_ENV_PASS``: variable names, never one that looks like a secret."""
    names = tuple(n.strip() for n in raw.split(",") if n.strip())
    for var in names:
        if not _VAR.match(var):
            raise SettingsError(f"{name}: {var!r} is not a variable name")
        if SECRET.search(var) or var in NEVER_PASS:
            raise SettingsError(f"{name}: {var} looks like a secret; scripts never get "
                                "secrets")
    return names


@dataclass(frozen=True)
class Safety(Config):
    """The checked values of ruqi's security settings."""

    #: ``RUQI_HTTP_ALLOW`` (default ``fleet``): read by :meth:`from_env`, since ``fleet``
    #: means the ``BUTTERFLY_<SVC>_URL`` hosts of the same environment
    allow: AllowList = field(default_factory=lambda: AllowList(()))
    output_max_bytes: int = setting(
        "RUQI_OUTPUT_MAX_BYTES", 4096, whole=True, min=64, max=OUTPUT_MAX_LIMIT,
        help="bytes of a fire's output kept in its history row; the rest is never read")
    script_env_pass: tuple[str, ...] = setting(
        "RUQI_SCRIPT_ENV_PASS", (), parse=_env_pass,
        help="comma-separated variables passed to scripts besides PATH, LANG, HOME, TZ")
    #: ``(uid, gid, home)`` scripts run as; None: ruqi's own user
    script_user: tuple[int, int, str] | None = setting(
        "RUQI_SCRIPT_USER", None, parse=lambda name, raw: _script_user(raw),
        help="user (name or uid) scripts run as")

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Safety:
        try:
            allow = AllowList.from_env(env)
        except AllowListError as exc:
            raise SettingsError(str(exc)) from None
        return cls(allow, **cls.values(env))

    def script_env(self, job_vars: Mapping[str, str]) -> dict[str, str]:
        """A script's whole environment: PATH, LANG, HOME, TZ, the pass list, the job's
        (HOME is the script user's when ``RUQI_SCRIPT_USER`` is set)."""
        env = {k: os.environ[k] for k in (*SCRIPT_BASE_ENV, *self.script_env_pass)
               if k in os.environ}
        env.setdefault("PATH", os.defpath)
        if self.script_user is not None:
            env["HOME"] = self.script_user[2]
        return {**env, **job_vars}


def _script_user(raw: str) -> tuple[int, int, str] | None:
    """``RUQI_SCRIPT_USER`` checked: the user exists, and this process may switch to it
    (it runs as root, or already as that user)."""
    if not raw:
        return None
    try:
        entry = pwd.getpwuid(int(raw)) if raw.isdigit() else pwd.getpwnam(raw)
    except (KeyError, ValueError):
        raise SettingsError(f"RUQI_SCRIPT_USER={raw!r}: no such user") from None
    if os.geteuid() not in (0, entry.pw_uid):
        raise SettingsError(f"RUQI_SCRIPT_USER={raw!r}: ruqi runs as uid {os.geteuid()} "
                            "and cannot start processes as another user (run it as root, "
                            "which then runs every script as that user)")
    return entry.pw_uid, entry.pw_gid, entry.pw_dir


def current() -> Safety:
    """This process's settings: the framework's one config cache (``runtime.get_config``),
    read from the environment the settings came from (``RUQI_*`` and the fleet's
    ``BUTTERFLY_<SVC>_URL``); checked at start by ``runner.setup``."""
    return get_config(Safety)


def cut(text: str, max_bytes: int) -> str:
    """``text`` within ``max_bytes`` of UTF-8 (cut at a character, marked ``...``)."""
    raw = text.encode("utf-8", "replace")
    if len(raw) <= max_bytes:
        return text
    return raw[:max_bytes - 3].decode("utf-8", "ignore") + "..."
