"""canghai's own settings (``CANGHAI_*``) and the fleet-wide signing key.

``CanghaiConfig`` is the config the Service declares: the framework reads and validates
it once at start (``runtime.get_config(CanghaiConfig)``), naming a bad variable.
``BUTTERFLY_SECRET_KEY`` belongs to the whole fleet, not to canghai, so :func:`fleet_secret`
reads it from the settings' environment. See docs/configuration.md (canghai) for every
variable.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from butterfly_common.config import Config, setting
from butterfly_common.settings import Settings, SettingsError

ROLES = ("viewer", "operator", "admin")
LANGS = ("zh", "en")
MIN_SECRET = 32


def is_development(env: Mapping[str, str]) -> bool:
    """``BUTTERFLY_ENV=development`` (or ``dev``): what ``make run`` sets."""
    return (env.get("BUTTERFLY_ENV") or "").strip().lower() in ("dev", "development")


def valid_username(name: str) -> bool:
    """Usernames end up in headers (``Username``) and logs: keep them plain."""
    return (0 < len(name) <= 64
            and all(c.isascii() and (c.isalnum() or c in "._-@") for c in name))


def _username_problem(name: str) -> str | None:
    return None if valid_username(name) else "1..64 letters, digits, '.', '_', '-' or '@'"


def _cookie_secure_default(env: Mapping[str, str]) -> bool:
    return not is_development(env)


def _trace_url_problem(value: str) -> str | None:
    """``CANGHAI_TRACE_URL``: an http(s) URL with ``{trace_id}`` where the id goes."""
    if not value:
        return None
    if not value.startswith(("http://", "https://")):
        return "expected an http(s) URL"
    if value.count("{trace_id}") != 1 or value.replace("{trace_id}", "").count("{"):
        return "expected exactly one {trace_id} placeholder and no other braces"
    return None


@dataclass(frozen=True)
class CanghaiConfig(Config):
    """Sign-in, session, lockout, sampling and fleet settings of the console."""

    trace_url: str = setting(
        "CANGHAI_TRACE_URL", "", check=_trace_url_problem,
        help="link from a request to its trace, e.g. "
             "http://jaeger:16686/trace/{trace_id} (tracing: docs/operations.md)")
    admin_user: str = setting(
        "CANGHAI_ADMIN_USER", "admin", check=_username_problem,
        help="the first admin, created at the first start when the user table is empty")
    admin_password: str = setting(
        "CANGHAI_ADMIN_PASSWORD", "", min_len=8, strip=False, secret=True,
        help="the first admin's password")
    cookie_secure: bool = setting(
        "CANGHAI_COOKIE_SECURE", True, env_default=_cookie_secure_default,
        help="mark the session and token cookies Secure (HTTPS only); on unless "
             "BUTTERFLY_ENV=development")
    session_hours: float = setting("CANGHAI_SESSION_HOURS", 8.0, min=0.01, max=24 * 30,
                                   help="a session (and a JWT) lasts this long")
    lockout_failures: int = setting(
        "CANGHAI_LOCKOUT_FAILURES", 5, min=1, max=1000,
        help="failed sign-ins per user before the user is locked")
    lockout_ip_failures: int = setting(
        "CANGHAI_LOCKOUT_IP_FAILURES", 20, min=1, max=100000,
        help="failed sign-ins per client address before it is locked")
    lockout_minutes: float = setting(
        "CANGHAI_LOCKOUT_MINUTES", 15.0, min=0.01, max=24 * 60,
        help="how long a lock (and the failure count) lasts")
    audit_days: float = setting("CANGHAI_AUDIT_DAYS", 90.0, min=1.0, max=36500.0,
                                help="audit entries older than this are deleted (hourly)")
    audit_failures_per_minute: int = setting(
        "CANGHAI_AUDIT_FAILURES_PER_MINUTE", 20, min=1, max=1_000_000,
        help="refused actions recorded per action and client address per minute; past it "
             "one entry says the rest were not recorded, so a flood cannot fill the table")
    series_hours: float = setting("CANGHAI_SERIES_HOURS", 24.0, min=1.0, max=24 * 90,
                                  help="retention of the per-minute chart buckets in Redis")
    sample_seconds: float = setting(
        "CANGHAI_SAMPLE_SECONDS", 15.0, min=0.2, max=60.0,
        help="how often the sampler records queue depth and traffic")
    fleet_file: str = setting(
        "CANGHAI_FLEET_FILE", "",
        help="the fleet definition (default deploy/fleet.toml when present in the working "
             "directory, else the installed services on their ports)")
    fleet_host: str = setting(
        "CANGHAI_FLEET_HOST", "127.0.0.1",
        help="host of the fleet's services; {name} becomes the instance name (compose); "
             "BUTTERFLY_<SVC>_URL overrides one service")
    probe_timeout: float = setting("CANGHAI_PROBE_TIMEOUT", 1.5, min=0.05, max=30.0,
                                   help="seconds a /readyz probe of a service may take")
    default_lang: str = setting("CANGHAI_DEFAULT_LANG", "zh", choices=LANGS, lower=True,
                                help="zh or en when the browser says neither")
    bulk_step: int = setting(
        "CANGHAI_BULK_STEP", 1000, min=1, max=10_000,
        help="ids one step of a console bulk action visits (one short Redis script each)")
    bulk_part_steps: int = setting(
        "CANGHAI_BULK_PART_STEPS", 20, min=1, max=1000,
        help="steps per part of a console bulk action run with its live progress (one "
             "request each)")
    log_dirs: str = setting(
        "CANGHAI_LOG_DIRS", "",
        help="log directories (os.pathsep-separated, each holding <service>/*.log) the reqid "
             "search reads; default BUTTERFLY_LOG_DIR")


def _dev_secret(data_dir: Path) -> str:
    path = Path(data_dir) / "canghai-dev-secret"
    try:
        return path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(48)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another worker won the race
        return path.read_text(encoding="ascii").strip()
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(secret)
    return secret


@dataclass(frozen=True)
class FleetSecret:
    """``BUTTERFLY_SECRET_KEY`` (or, in development only, a generated local key)."""

    secret: str
    development: bool

    def key(self, purpose: str) -> bytes:
        """A key for ``purpose`` derived from the secret, so cookies and tokens never
        share one."""
        return hmac.new(self.secret.encode(), f"butterfly-canghai:{purpose}".encode(),
                        hashlib.sha256).digest()


_secret: tuple[Settings, FleetSecret] | None = None


def fleet_secret(settings: Settings) -> FleetSecret:
    """The fleet's signing secret; SettingsError when unset outside development.

    ``BUTTERFLY_ENV=development`` without a key uses a random one kept in the data dir
    (0600), so it survives restarts and every worker process shares it.
    """
    env = settings.env or os.environ
    development = is_development(env)
    secret = (env.get("BUTTERFLY_SECRET_KEY") or "").strip()
    if secret and len(secret) < MIN_SECRET:
        raise SettingsError(f"BUTTERFLY_SECRET_KEY: use at least {MIN_SECRET} characters")
    if not secret:
        if not development:
            raise SettingsError("BUTTERFLY_SECRET_KEY is not set: canghai signs sessions and "
                                "tokens with it (one key for the whole fleet); set "
                                "BUTTERFLY_ENV=development to use a generated local key")
        secret = _dev_secret(settings.data_dir)
    return FleetSecret(secret, development)


def current_secret() -> FleetSecret:
    """The fleet secret of this process's settings (read once per settings object)."""
    global _secret
    from butterfly_common.runtime import get_settings

    settings = get_settings()
    if _secret is None or _secret[0] is not settings:
        _secret = (settings, fleet_secret(settings))
    return _secret[1]
