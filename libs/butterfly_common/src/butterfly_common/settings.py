"""Settings from the environment: one set of ``BUTTERFLY_*`` variables for every service.

A service with no configuration starts on SQLite under the data dir and a local Redis.
A bad value stops start-up with a message naming the variable, never a traceback deep
inside a request.
"""

from __future__ import annotations

import ipaddress
import json
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


class SettingsError(ValueError):
    """A configuration value is missing or malformed; the message names the variable."""


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Settings:
    """Typed view of the environment. Build it with :func:`load_settings`."""

    redis_url: str = DEFAULT_REDIS_URL
    db_url: str = ""
    #: ``BUTTERFLY_HOST``: this machine only unless told otherwise (the container image
    #: sets 0.0.0.0)
    host: str = "127.0.0.1"
    port: int = 8585
    #: ``BUTTERFLY_ANNOUNCE``: the URL ``butterfly serve`` announces in Redis for the
    #: console (``announce.py``); empty: from host and port; ``off``: none
    announce: str = ""
    data_dir: Path = Path("var/data")
    #: Where ``@download`` handlers serve files from; None: ``<data dir>/download``.
    download_dir: Path | None = None
    log_dir: str = "var/log"
    log_level: str = "INFO"
    log_max_bytes: int = 64 * 1024 * 1024
    log_backups: int = 10
    #: acc.log lines are written in batches at most this often (0: every line at once)
    log_flush_ms: int = 100
    consume: bool = False
    consume_threads: int = 8
    consume_topics: tuple[str, ...] = ()
    consume_max_idle: float = 0.5
    mq_lease: float = 30.0
    admin_token: str = ""
    #: Write actions (``@api(write=True)``) accept this token besides the admin token.
    operator_token: str = ""
    trusted_proxies: tuple[Network, ...] = ()
    #: ``BUTTERFLY_READ_AUTH``: who may call the routes that need no role (reads, publish):
    #: ``open`` (anyone), ``token`` (a bearer credential: admin / operator / read token or
    #: a huoyan JWT) or ``signed-in`` (any identity with a role, a trusted proxy's user too)
    read_auth: str = "open"
    #: ``BUTTERFLY_READ_TOKEN``: a bearer token that may read (the viewer role) and no more
    read_token: str = field(default="", repr=False)
    #: ``BUTTERFLY_SECRET_KEY``: the fleet's signing key; huoyan (canghai) signs JWTs with
    #: it and every service verifies them with it (auth.identify). Empty: no JWTs.
    secret_key: str = field(default="", repr=False)
    legacy_status: bool = False
    stat_adaptor: Mapping[str, Any] | None = None
    max_body_bytes: int = 1024 * 1024
    #: ``BUTTERFLY_MAX_JSON_DEPTH``: deepest nesting of a client's JSON (body, dict
    #: params, published data); deeper is ERR_BAD_PARAMS before anything is stored.
    max_json_depth: int = 64
    #: ``BUTTERFLY_REDIS_TIMEOUT``: seconds to connect to Redis and to wait for a reply.
    redis_timeout: float = 1.0
    #: ``BUTTERFLY_REDIS_RETRIES``: retries after a refused/dropped connection (never
    #: after a reply timed out: the command may have run).
    redis_retries: int = 1
    workers: int = 2
    threads: int = 8
    #: ``BUTTERFLY_FASTPATH_RESPONSE``: API answers as plain WSGI, not werkzeug's Response
    fastpath_response: bool = True
    #: ``BUTTERFLY_FASTPATH_ONE_WRITE``: gunicorn sends an answer's head and body in one write
    fastpath_one_write: bool = True
    #: ``BUTTERFLY_FASTPATH_BREAKER_SOCKET``: the Redis breaker releases a silent server's
    #: reads after half the timeout (through redis-py's socket), not at the timeout
    fastpath_breaker_socket: bool = True
    timeout: int = 60
    #: ``BUTTERFLY_<SVC>_URL``: base URL of service ``<svc>`` (lower-case) for
    #: :mod:`butterfly_common.httpclient`; unset services default to their local port.
    service_urls: Mapping[str, str] = field(default_factory=dict)
    #: The environment these settings were read from; a service's own variables
    #: (``RUQI_*``...) are read from it by the ``config`` the Service declares.
    env: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    def service_env(self, prefix: str) -> dict[str, str]:
        """The variables of one service's ``env_prefix`` (``RUQI`` -> ``RUQI_*``), verbatim."""
        head = prefix.upper().rstrip("_") + "_"
        return {k: v for k, v in self.env.items() if k.startswith(head)}

    @property
    def extra(self) -> dict[str, str]:
        """Every variable that is not ``BUTTERFLY_*``; prefer :meth:`service_env`."""
        return {k: v for k, v in self.env.items() if not k.startswith("BUTTERFLY_")}

    @property
    def log_to_stdout(self) -> bool:
        """``BUTTERFLY_LOG_DIR=-`` sends every log to stdout, as containers want."""
        return self.log_dir == "-"

    @property
    def download_root(self) -> Path:
        """The folder downloads come from: never the data dir itself, which holds SQLite."""
        return self.download_dir or self.data_dir / "download"

    @property
    def database_url(self) -> str:
        """The DB URL, defaulting to a SQLite file in the data dir."""
        return self.db_url or f"sqlite:///{self.data_dir / 'butterfly.db'}"


def _secret(name: str, raw: str, minimum: int) -> str:
    """A token or key: long enough to resist guessing, else SettingsError naming it."""
    if len(raw) < minimum:
        raise SettingsError(f"{name}: use at least {minimum} characters")
    return raw


def _bool(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise SettingsError(f"{name}={raw!r}: expected one of 1/0, true/false, yes/no, on/off")


def _int(name: str, raw: str, minimum: int = 0, maximum: int | None = None) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r}: expected a whole number") from None
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"{minimum}..{maximum}" if maximum is not None else f">= {minimum}"
        raise SettingsError(f"{name}={raw!r}: expected a number in {bound}")
    return value


def _float(name: str, raw: str, minimum: float, maximum: float = math.inf) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r}: expected a number") from None
    if not math.isfinite(value) or not minimum <= value <= maximum:
        bound = f">= {minimum:g}" if maximum == math.inf else f"in {minimum:g}..{maximum:g}"
        raise SettingsError(f"{name}={raw!r}: expected a number {bound}")
    return value


def env_number(env: Mapping[str, str], name: str, default: float, minimum: float = 0.0,
               maximum: float = math.inf) -> float:
    """A service's numeric variable (``BAICHUAN_MAX_WAIT``...): ``default`` when unset or
    blank, SettingsError naming the variable when malformed or out of range."""
    raw = (env.get(name) or "").strip()
    return default if not raw else _float(name, raw, minimum, maximum)


def env_flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    """A service's on/off variable: ``default`` when unset or blank."""
    raw = (env.get(name) or "").strip()
    return default if not raw else _bool(name, raw)


def _networks(name: str, raw: str) -> tuple[Network, ...]:
    nets = []
    for item in filter(None, (part.strip() for part in raw.split(","))):
        try:
            nets.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise SettingsError(f"{name}: {item!r} is not an IP address or CIDR network") from None
    return tuple(nets)


def _url(name: str, raw: str, schemes: tuple[str, ...]) -> str:
    scheme = raw.split("://", 1)[0] if "://" in raw else ""
    if scheme not in schemes:
        raise SettingsError(f"{name}: expected a URL starting with one of {', '.join(schemes)}://")
    return raw


def _stat_adaptor(name: str, raw: str) -> Mapping[str, Any]:
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise SettingsError(f"{name}: not valid JSON ({exc})") from None
    keys = {"status_name", "status_map", "message_name"}
    if not isinstance(value, dict) or not keys <= value.keys():
        raise SettingsError(f"{name}: expected a JSON object with keys {sorted(keys)}")
    if not isinstance(value["status_map"], dict) or "default" not in value["status_map"]:
        raise SettingsError(f"{name}: status_map must be an object with a 'default' key")
    return value


def _redis_url(name: str, raw: str) -> str:
    """A Redis URL on database 0: Twemproxy and Redis Cluster have no SELECT, so any other
    database would work against a plain Redis and break the day a proxy is put in front."""
    url = _url(name, raw, REDIS_SCHEMES)
    parts = urlsplit(url)
    path = "" if parts.scheme == "unix" else parts.path.strip("/")
    given = [path] if path else []
    given += parse_qs(parts.query).get("db", [])
    for db in given:
        if db != "0":
            raise SettingsError(f"{name}: database {db!r} is not supported, only 0 "
                                "(Twemproxy and Redis Cluster have no SELECT); "
                                "use a separate Redis to keep data apart")
    return url


REDIS_SCHEMES = ("redis", "rediss", "unix", "redis+cluster", "rediss+cluster")
READ_AUTH = ("open", "token", "signed-in")
DB_SCHEMES = ("sqlite", "mysql", "mysql+pool", "postgres", "postgresql", "postgres+pool",
              "postgresql+pool")


def load_settings(env: Mapping[str, str] | None = None, *, default_port: int = 8585) -> Settings:
    """Read settings from ``env`` (default: ``os.environ``), raising SettingsError on bad input."""
    env = os.environ if env is None else env

    def get(name: str) -> str | None:
        value = env.get(name)
        return None if value is None or value.strip() == "" else value.strip()

    kwargs: dict[str, Any] = {}
    if (raw := get("BUTTERFLY_REDIS_URL")) is not None:
        kwargs["redis_url"] = _redis_url("BUTTERFLY_REDIS_URL", raw)
    if (raw := get("BUTTERFLY_DB_URL")) is not None:
        kwargs["db_url"] = _url("BUTTERFLY_DB_URL", raw, DB_SCHEMES)
    if (raw := get("BUTTERFLY_HOST")) is not None:
        kwargs["host"] = raw
    kwargs["port"] = _int("BUTTERFLY_PORT", get("BUTTERFLY_PORT") or str(default_port), 1, 65535)
    if (raw := get("BUTTERFLY_DATA_DIR")) is not None:
        kwargs["data_dir"] = Path(raw)
    if (raw := get("BUTTERFLY_DOWNLOAD_DIR")) is not None:
        kwargs["download_dir"] = Path(raw)
    if (raw := get("BUTTERFLY_LOG_DIR")) is not None:
        kwargs["log_dir"] = raw
    if (raw := get("BUTTERFLY_LOG_LEVEL")) is not None:
        level = raw.upper()
        if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise SettingsError(f"BUTTERFLY_LOG_LEVEL={raw!r}: expected DEBUG, INFO, WARNING, "
                                "ERROR or CRITICAL")
        kwargs["log_level"] = level
    if (raw := get("BUTTERFLY_LOG_MAX_BYTES")) is not None:
        kwargs["log_max_bytes"] = _int("BUTTERFLY_LOG_MAX_BYTES", raw, 1024)
    if (raw := get("BUTTERFLY_LOG_BACKUPS")) is not None:
        kwargs["log_backups"] = _int("BUTTERFLY_LOG_BACKUPS", raw, 1, 1000)
    if (raw := get("BUTTERFLY_LOG_FLUSH_MS")) is not None:
        kwargs["log_flush_ms"] = _int("BUTTERFLY_LOG_FLUSH_MS", raw, 0, 10_000)
    if (raw := get("BUTTERFLY_CONSUME")) is not None:
        kwargs["consume"] = _bool("BUTTERFLY_CONSUME", raw)
    if (raw := get("BUTTERFLY_CONSUME_THREADS")) is not None:
        kwargs["consume_threads"] = _int("BUTTERFLY_CONSUME_THREADS", raw, 1, 256)
    if (raw := get("BUTTERFLY_CONSUME_TOPICS")) is not None:
        kwargs["consume_topics"] = tuple(t.strip() for t in raw.split(",") if t.strip())
    if (raw := get("BUTTERFLY_CONSUME_MAX_IDLE")) is not None:
        kwargs["consume_max_idle"] = _float("BUTTERFLY_CONSUME_MAX_IDLE", raw, 0.01, 30.0)
    if (raw := get("BUTTERFLY_MQ_LEASE")) is not None:
        kwargs["mq_lease"] = _float("BUTTERFLY_MQ_LEASE", raw, 0.1, 3600.0)
    if (raw := get("BUTTERFLY_ADMIN_TOKEN")) is not None:
        kwargs["admin_token"] = _secret("BUTTERFLY_ADMIN_TOKEN", raw, 16)
    if (raw := get("BUTTERFLY_OPERATOR_TOKEN")) is not None:
        kwargs["operator_token"] = _secret("BUTTERFLY_OPERATOR_TOKEN", raw, 16)
    if (raw := get("BUTTERFLY_READ_AUTH")) is not None:
        if raw.lower() not in READ_AUTH:
            raise SettingsError(f"BUTTERFLY_READ_AUTH={raw!r}: expected "
                                f"{', '.join(READ_AUTH)}")
        kwargs["read_auth"] = raw.lower()
    if (raw := get("BUTTERFLY_READ_TOKEN")) is not None:
        kwargs["read_token"] = _secret("BUTTERFLY_READ_TOKEN", raw, 16)
    if (raw := get("BUTTERFLY_SECRET_KEY")) is not None:
        kwargs["secret_key"] = _secret("BUTTERFLY_SECRET_KEY", raw, 32)
    if (raw := get("BUTTERFLY_TRUSTED_PROXIES")) is not None:
        kwargs["trusted_proxies"] = _networks("BUTTERFLY_TRUSTED_PROXIES", raw)
    if (raw := get("BUTTERFLY_LEGACY_STATUS")) is not None:
        kwargs["legacy_status"] = _bool("BUTTERFLY_LEGACY_STATUS", raw)
    if (raw := get("BUTTERFLY_ANNOUNCE")) is not None:
        kwargs["announce"] = ("off" if raw.lower() == "off" else
                              _url("BUTTERFLY_ANNOUNCE", raw, ("http", "https")).rstrip("/"))
    if (raw := get("BUTTERFLY_STAT_ADAPTOR")) is not None:
        kwargs["stat_adaptor"] = _stat_adaptor("BUTTERFLY_STAT_ADAPTOR", raw)
    if (raw := get("BUTTERFLY_MAX_BODY_BYTES")) is not None:
        kwargs["max_body_bytes"] = _int("BUTTERFLY_MAX_BODY_BYTES", raw, 1)
    if (raw := get("BUTTERFLY_MAX_JSON_DEPTH")) is not None:
        kwargs["max_json_depth"] = _int("BUTTERFLY_MAX_JSON_DEPTH", raw, 2, 512)
    if (raw := get("BUTTERFLY_REDIS_TIMEOUT")) is not None:
        kwargs["redis_timeout"] = _float("BUTTERFLY_REDIS_TIMEOUT", raw, 0.05, 60.0)
    if (raw := get("BUTTERFLY_REDIS_RETRIES")) is not None:
        kwargs["redis_retries"] = _int("BUTTERFLY_REDIS_RETRIES", raw, 0, 10)
    if (raw := get("BUTTERFLY_WORKERS")) is not None:
        kwargs["workers"] = _int("BUTTERFLY_WORKERS", raw, 1, 256)
    if (raw := get("BUTTERFLY_THREADS")) is not None:
        kwargs["threads"] = _int("BUTTERFLY_THREADS", raw, 1, 1024)
    if (raw := get("BUTTERFLY_TIMEOUT")) is not None:
        kwargs["timeout"] = _int("BUTTERFLY_TIMEOUT", raw, 1)
    kwargs.update(_fastpaths(get))
    kwargs["service_urls"] = _service_urls(env)
    kwargs["env"] = dict(env)
    settings = Settings(**kwargs)
    _check_download_root(settings)
    return settings


#: The fast paths (``butterfly_common.fastpath``): Settings field -> its own variable.
FASTPATHS = {"fastpath_response": "BUTTERFLY_FASTPATH_RESPONSE",
             "fastpath_one_write": "BUTTERFLY_FASTPATH_ONE_WRITE",
             "fastpath_breaker_socket": "BUTTERFLY_FASTPATH_BREAKER_SOCKET"}


def _fastpaths(get: Callable[[str], str | None]) -> dict[str, bool]:
    """Each fast path is on unless its variable or ``BUTTERFLY_FASTPATH`` says 0: the
    master switch turns them all off, whatever the others say."""
    raw = get("BUTTERFLY_FASTPATH")
    every = True if raw is None else _bool("BUTTERFLY_FASTPATH", raw)
    switches = {}
    for field_name, name in FASTPATHS.items():
        raw = get(name)
        switches[field_name] = every and (True if raw is None else _bool(name, raw))
    return switches


def _check_download_root(settings: Settings) -> None:
    """Refuse a download root that holds the SQLite database or the logs."""
    root = settings.download_root.resolve()
    held = []
    if settings.database_url.startswith("sqlite:///"):
        held.append(("the database", Path(settings.database_url.removeprefix("sqlite:///"))))
    if not settings.log_to_stdout:
        held.append(("the log dir", Path(settings.log_dir)))
    for what, path in held:
        if path.resolve().is_relative_to(root):
            raise SettingsError(f"BUTTERFLY_DOWNLOAD_DIR={str(root)!r} holds {what}: "
                                "downloads need a folder of their own")


#: ``BUTTERFLY_*_URL`` variables that are not a service's base URL.
_NOT_SERVICE_URLS = ("BUTTERFLY_REDIS_URL", "BUTTERFLY_DB_URL")


def _service_urls(env: Mapping[str, str]) -> dict[str, str]:
    """``{"ruqi": "http://host:4100", ...}`` from ``BUTTERFLY_RUQI_URL``-style variables."""
    urls = {}
    for name, raw in env.items():
        if (not name.startswith("BUTTERFLY_") or not name.endswith("_URL")
                or name in _NOT_SERVICE_URLS or not raw.strip()):
            continue
        service = name[len("BUTTERFLY_"):-len("_URL")].lower()
        if not service:
            continue
        urls[service] = _url(name, raw.strip(), ("http", "https")).rstrip("/")
    return urls
