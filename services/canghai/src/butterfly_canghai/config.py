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

from butterfly_common.settings import Settings, SettingsError, env_flag, env_number

ROLES = ("viewer", "operator", "admin")
LANGS = ("zh", "en")
MIN_SECRET = 32


@dataclass(frozen=True)
class CanghaiConfig:
    """Sign-in, session, lockout, sampling and fleet settings of the console."""

    #: ``CANGHAI_ADMIN_USER`` / ``CANGHAI_ADMIN_PASSWORD``: the first admin, created at the
    #: first start when the user table is empty.
    admin_user: str = "admin"
    admin_password: str = ""
    #: ``CANGHAI_COOKIE_SECURE``: mark the session and token cookies ``Secure`` (sent over
    #: HTTPS only); on unless ``BUTTERFLY_ENV=development``.
    cookie_secure: bool = True
    #: ``CANGHAI_SESSION_HOURS``: a session (and a JWT) lasts this long.
    session_hours: float = 8.0
    #: ``CANGHAI_LOCKOUT_FAILURES``: failed sign-ins per user before the user is locked.
    lockout_failures: int = 5
    #: ``CANGHAI_LOCKOUT_IP_FAILURES``: failed sign-ins per client address before it is locked.
    lockout_ip_failures: int = 20
    #: ``CANGHAI_LOCKOUT_MINUTES``: how long a lock (and the failure count) lasts.
    lockout_minutes: float = 15.0
    #: ``CANGHAI_AUDIT_DAYS``: audit entries older than this are deleted (hourly).
    audit_days: float = 90.0
    #: ``CANGHAI_AUDIT_FAILURES_PER_MINUTE``: refused actions (failed sign-ins, CSRF and
    #: role refusals) recorded per action and client address per minute; past it one entry
    #: says the rest were not recorded, so a flood cannot fill the table.
    audit_failures_per_minute: int = 20
    #: ``CANGHAI_SERIES_HOURS``: retention of the per-minute chart buckets in Redis.
    series_hours: float = 24.0
    #: ``CANGHAI_SAMPLE_SECONDS``: how often the sampler records queue depth and traffic.
    sample_seconds: float = 15.0
    #: ``CANGHAI_FLEET_FILE``: the fleet definition (default ``deploy/fleet.toml`` when
    #: present in the working directory, else the installed services on their ports).
    fleet_file: str = ""
    #: ``CANGHAI_FLEET_HOST``: host of the fleet's services; ``{name}`` becomes the
    #: instance name (compose). ``BUTTERFLY_<SVC>_URL`` overrides one service.
    fleet_host: str = "127.0.0.1"
    #: ``CANGHAI_PROBE_TIMEOUT``: seconds a ``/readyz`` probe of a service may take.
    probe_timeout: float = 1.5
    #: ``CANGHAI_DEFAULT_LANG``: ``zh`` or ``en`` when the browser says neither.
    default_lang: str = "zh"
    #: ``CANGHAI_LOG_DIRS``: log directories (``os.pathsep``-separated, each holding
    #: ``<service>/*.log``) the reqid search reads; default ``BUTTERFLY_LOG_DIR``.
    log_dirs: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> CanghaiConfig:
        """Validate the ``CANGHAI_*`` variables (SettingsError naming the variable)."""
        lang = (env.get("CANGHAI_DEFAULT_LANG") or "zh").strip().lower()
        if lang not in LANGS:
            raise SettingsError(f"CANGHAI_DEFAULT_LANG={lang!r}: expected zh or en")
        admin_user = (env.get("CANGHAI_ADMIN_USER") or "admin").strip()
        if not valid_username(admin_user):
            raise SettingsError(f"CANGHAI_ADMIN_USER={admin_user!r}: 1..64 letters, digits, "
                                "'.', '_', '-' or '@'")
        password = env.get("CANGHAI_ADMIN_PASSWORD") or ""
        if password and len(password) < 8:
            raise SettingsError("CANGHAI_ADMIN_PASSWORD: use at least 8 characters")
        return cls(
            admin_user=admin_user,
            admin_password=password,
            cookie_secure=env_flag(env, "CANGHAI_COOKIE_SECURE", not is_development(env)),
            session_hours=env_number(env, "CANGHAI_SESSION_HOURS", 8.0, 0.01, 24 * 30),
            lockout_failures=int(env_number(env, "CANGHAI_LOCKOUT_FAILURES", 5, 1, 1000)),
            lockout_ip_failures=int(env_number(env, "CANGHAI_LOCKOUT_IP_FAILURES", 20, 1,
                                               100000)),
            lockout_minutes=env_number(env, "CANGHAI_LOCKOUT_MINUTES", 15.0, 0.01, 24 * 60),
            series_hours=env_number(env, "CANGHAI_SERIES_HOURS", 24.0, 1.0, 24 * 90),
            audit_days=env_number(env, "CANGHAI_AUDIT_DAYS", 90.0, 1.0, 36500.0),
            audit_failures_per_minute=int(env_number(
                env, "CANGHAI_AUDIT_FAILURES_PER_MINUTE", 20, 1, 1_000_000)),
            sample_seconds=env_number(env, "CANGHAI_SAMPLE_SECONDS", 15.0, 0.2, 60.0),
            fleet_file=(env.get("CANGHAI_FLEET_FILE") or "").strip(),
            fleet_host=(env.get("CANGHAI_FLEET_HOST") or "127.0.0.1").strip(),
            probe_timeout=env_number(env, "CANGHAI_PROBE_TIMEOUT", 1.5, 0.05, 30.0),
            default_lang=lang,
            log_dirs=(env.get("CANGHAI_LOG_DIRS") or "").strip(),
        )


def is_development(env: Mapping[str, str]) -> bool:
    """``BUTTERFLY_ENV=development`` (or ``dev``): what ``make run`` sets."""
    return (env.get("BUTTERFLY_ENV") or "").strip().lower() in ("dev", "development")


def valid_username(name: str) -> bool:
    """Usernames end up in headers (``Username``) and logs: keep them plain."""
    return (0 < len(name) <= 64
            and all(c.isascii() and (c.isalnum() or c in "._-@") for c in name))


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


def current() -> CanghaiConfig:
    """The validated config of this process (read once by the framework)."""
    from butterfly_common.runtime import get_config

    return get_config(CanghaiConfig)

