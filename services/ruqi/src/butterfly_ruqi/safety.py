"""ruqi's security settings: where HTTP jobs may go, what scripts see, how much is recorded.

``RUQI_HTTP_ALLOW``        allow-list of HTTP targets (allowlist.py; default ``fleet``)
``RUQI_OUTPUT_MAX_BYTES``  bytes of a fire's output kept in its history row (default 4096,
                           64..60000); the rest is never read into memory
``RUQI_SCRIPT_ENV_PASS``   extra variables passed to scripts (comma list; default none)

Kept apart from ``config.py`` (the scheduling knobs) because each of these closes a hole
(issue 12, defects 3 and 4) and is read on every fire, not once per engine.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from butterfly_common.logs import SECRET
from butterfly_common.runtime import get_config
from butterfly_common.settings import SettingsError, env_number

from .allowlist import AllowList, AllowListError

#: Always passed to scripts (when the service has them), besides the job's own variables.
SCRIPT_BASE_ENV = ("PATH", "LANG", "HOME", "TZ")
#: Never passed, even when listed: URLs of the queue and DB may carry passwords.
NEVER_PASS = ("BUTTERFLY_DB_URL", "BUTTERFLY_REDIS_URL")
#: The history column is a TEXT (64 KiB on MySQL): outputs stay below that.
OUTPUT_MAX_LIMIT = 60_000
_VAR = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Safety:
    """The checked values of ruqi's security settings."""

    allow: AllowList
    output_max_bytes: int = 4096
    script_env_pass: tuple[str, ...] = ()

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Safety:
        try:
            allow = AllowList.from_env(env)
        except AllowListError as exc:
            raise SettingsError(str(exc)) from None
        names = tuple(n.strip() for n in (env.get("RUQI_SCRIPT_ENV_PASS") or "").split(",")
                      if n.strip())
        for name in names:
            if not _VAR.match(name):
                raise SettingsError(f"RUQI_SCRIPT_ENV_PASS: {name!r} is not a variable name")
            if SECRET.search(name) or name in NEVER_PASS:
                raise SettingsError(f"RUQI_SCRIPT_ENV_PASS: {name} looks like a secret; "
                                    "scripts never get secrets")
        return cls(allow=allow,
                   output_max_bytes=int(env_number(env, "RUQI_OUTPUT_MAX_BYTES", 4096, 64,
                                                   OUTPUT_MAX_LIMIT)),
                   script_env_pass=names)

    def script_env(self, job_vars: Mapping[str, str]) -> dict[str, str]:
        """A script's whole environment: PATH, LANG, HOME, TZ, the pass list, the job's."""
        env = {k: os.environ[k] for k in (*SCRIPT_BASE_ENV, *self.script_env_pass)
               if k in os.environ}
        env.setdefault("PATH", os.defpath)
        return {**env, **job_vars}


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
