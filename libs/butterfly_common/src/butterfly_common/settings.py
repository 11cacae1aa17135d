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
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .config import Config, SettingInfo, _bool, _float, setting
from .config import SettingsError as SettingsError  # its home for every caller

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
#: ``BUTTERFLY_PORT`` when unset (also what ``butterfly healthcheck`` asks, without
#: loading the settings)
DEFAULT_PORT = 8585


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


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


def _db_url(name: str, raw: str) -> str:
    return _url(name, raw, DB_SCHEMES)


def _log_level(name: str, raw: str) -> str:
    level = raw.upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise SettingsError(f"{name}={raw!r}: expected DEBUG, INFO, WARNING, ERROR or CRITICAL")
    return level


def _topics(name: str, raw: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in raw.split(",") if t.strip())


def _read_auth(name: str, raw: str) -> str:
    if raw.lower() not in READ_AUTH:
        raise SettingsError(f"{name}={raw!r}: expected {', '.join(READ_AUTH)}")
    return raw.lower()


def _announce(name: str, raw: str) -> str:
    return "off" if raw.lower() == "off" else _url(name, raw, ("http", "https")).rstrip("/")


@dataclass(frozen=True)
class Settings(Config):
    """Typed view of the environment. Build it with :func:`load_settings`."""

    redis_url: str = setting(
        "BUTTERFLY_REDIS_URL", DEFAULT_REDIS_URL, parse=_redis_url,
        help="Redis (or a Twemproxy listener, or redis+cluster://); database 0 only")
    db_url: str = setting("BUTTERFLY_DB_URL", "", parse=_db_url,
                          help="peewee URL; empty: SQLite butterfly.db in the data dir")
    host: str = setting("BUTTERFLY_HOST", "127.0.0.1",
                        help="listen address: this machine only unless told (the image: "
                             "0.0.0.0)")
    port: int = setting("BUTTERFLY_PORT", DEFAULT_PORT, whole=True, min=1, max=65535,
                        help="listen port (default: the service's)")
    announce: str = setting(
        "BUTTERFLY_ANNOUNCE", "", parse=_announce,
        help="the URL 'butterfly serve' announces in Redis for the console; empty: from "
             "host and port; off: none")
    data_dir: Path = setting("BUTTERFLY_DATA_DIR", Path("var/data"),
                             help="SQLite file, service data")
    download_dir: Path | None = setting(
        "BUTTERFLY_DOWNLOAD_DIR", None,
        help="where @download handlers serve files from; unset: <data dir>/download")
    log_dir: str = setting("BUTTERFLY_LOG_DIR", "var/log",
                           help="logs go to <dir>/<service>/; -: everything to stdout")
    log_level: str = setting("BUTTERFLY_LOG_LEVEL", "INFO", parse=_log_level,
                             help="level of common.log")
    log_max_bytes: int = setting("BUTTERFLY_LOG_MAX_BYTES", 64 * 1024 * 1024, whole=True,
                                 min=1024, help="size rotation of each log file")
    log_backups: int = setting("BUTTERFLY_LOG_BACKUPS", 10, whole=True, min=1, max=1000,
                               help="rotated files kept per log")
    log_flush_ms: int = setting(
        "BUTTERFLY_LOG_FLUSH_MS", 100, whole=True, min=0, max=10_000,
        help="acc.log lines are written in batches at most this often (0: every line)")
    consume: bool = setting("BUTTERFLY_CONSUME", False,
                            help="serve this service's topics from the queue in every worker")
    consume_threads: int = setting("BUTTERFLY_CONSUME_THREADS", 8, whole=True, min=1,
                                   max=256, help="handler threads per consumer")
    consume_topics: tuple[str, ...] = setting(
        "BUTTERFLY_CONSUME_TOPICS", (), parse=_topics,
        help="comma-separated topics to consume (default: every queueable handler)")
    consume_max_idle: float = setting(
        "BUTTERFLY_CONSUME_MAX_IDLE", 0.5, min=0.01, max=30.0,
        help="longest pause (s) between polls of an idle queue")
    mq_lease: float = setting(
        "BUTTERFLY_MQ_LEASE", 30.0, min=0.1, max=3600.0,
        help="seconds a claimed message stays invisible unless its consumer extends it")
    admin_token: str = setting("BUTTERFLY_ADMIN_TOKEN", "", min_len=16, secret=True,
                               help="bearer token of admin handlers; unset: admin actions off")
    #: Write actions (``@api(write=True)``) accept this token besides the admin token.
    operator_token: str = setting("BUTTERFLY_OPERATOR_TOKEN", "", min_len=16, secret=True,
                                  help="bearer token of write actions (admin's works too)")
    trusted_proxies: tuple[Network, ...] = setting(
        "BUTTERFLY_TRUSTED_PROXIES", (), parse=_networks,
        help="comma-separated IPs/CIDRs whose X-Real-IP / X-Forwarded-For / X-Username / "
             "X-Role are believed")
    #: ``open`` (anyone), ``token`` (a bearer credential: admin / operator / read token or
    #: a huoyan JWT) or ``signed-in`` (any identity with a role, a trusted proxy's user too)
    read_auth: str = setting("BUTTERFLY_READ_AUTH", "open", parse=_read_auth,
                             help="who may call the routes that need no role: open, token "
                                  "or signed-in")
    read_token: str = setting("BUTTERFLY_READ_TOKEN", "", min_len=16, secret=True,
                              help="a bearer token that may read (the viewer role) and no more")
    #: huoyan (canghai) signs JWTs with it and every service verifies them with it
    #: (auth.identify). Empty: no JWTs.
    secret_key: str = setting("BUTTERFLY_SECRET_KEY", "", min_len=32, secret=True,
                              help="the fleet's signing key (JWTs); at least 32 characters")
    legacy_status: bool = setting(
        "BUTTERFLY_LEGACY_STATUS", False,
        help="answer framework errors and refusals with the original's status codes (200)")
    stat_adaptor: Mapping[str, Any] | None = setting(
        "BUTTERFLY_STAT_ADAPTOR", None, parse=_stat_adaptor,
        help="JSON: adds success / message-style keys to answers")
    max_body_bytes: int = setting("BUTTERFLY_MAX_BODY_BYTES", 1024 * 1024, whole=True, min=1,
                                  help="request body limit (413 above)")
    max_json_depth: int = setting(
        "BUTTERFLY_MAX_JSON_DEPTH", 64, whole=True, min=2, max=512,
        help="deepest nesting of a client's JSON; deeper is ERR_BAD_PARAMS before anything "
             "is stored")
    redis_timeout: float = setting(
        "BUTTERFLY_REDIS_TIMEOUT", 1.0, min=0.05, max=60.0,
        help="seconds to connect to Redis and to wait for a reply")
    redis_retries: int = setting(
        "BUTTERFLY_REDIS_RETRIES", 1, whole=True, min=0, max=10,
        help="retries after a refused/dropped connection (never after a reply timed out: "
             "the command may have run)")
    workers: int = setting("BUTTERFLY_WORKERS", 2, whole=True, min=1, max=256,
                           help="gunicorn processes")
    threads: int = setting("BUTTERFLY_THREADS", 8, whole=True, min=1, max=1024,
                           help="gunicorn threads per process")
    timeout: int = setting("BUTTERFLY_TIMEOUT", 60, whole=True, min=1,
                           help="gunicorn worker timeout (s)")
    #: The fast paths (``butterfly_common.fastpath``): each on unless its own variable or
    #: ``BUTTERFLY_FASTPATH`` says 0; the master switch turns them all off.
    fastpath: bool = setting(
        "BUTTERFLY_FASTPATH", True,
        help="0 turns every fast path off (only the libraries' public behaviour)")
    fastpath_response: bool = setting(
        "BUTTERFLY_FASTPATH_RESPONSE", True,
        help="API answers as plain WSGI, not werkzeug's Response")
    fastpath_one_write: bool = setting(
        "BUTTERFLY_FASTPATH_ONE_WRITE", True,
        help="gunicorn sends an answer's head and body in one write")
    fastpath_breaker_socket: bool = setting(
        "BUTTERFLY_FASTPATH_BREAKER_SOCKET", True,
        help="the Redis breaker releases a silent server's reads after half the timeout "
             "(through redis-py's socket), not at the timeout")
    middleware: str = setting(
        "BUTTERFLY_MIDDLEWARE", "",
        help="comma-separated module:attr of extra middleware (a Middleware instance or "
             "class), run inside the framework's and the service's own")
    #: ``BUTTERFLY_<SVC>_URL``: base URL of service ``<svc>`` (lower-case) for
    #: :mod:`butterfly_common.httpclient`; unset services default to their local port.
    service_urls: Mapping[str, str] = field(default_factory=dict)
    #: The environment these settings were read from; a service's own variables
    #: (``RUQI_*``...) are read from it by the ``config`` the Service declares.
    env: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """:func:`load_settings` with the service URLs and the environment kept too."""
        return load_settings(env)

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


#: The fast paths' own switches, which ``BUTTERFLY_FASTPATH=0`` overrides.
FASTPATHS = ("fastpath_response", "fastpath_one_write", "fastpath_breaker_socket")


def load_settings(env: Mapping[str, str] | None = None, *,
                  default_port: int = DEFAULT_PORT) -> Settings:
    """Read settings from ``env`` (default: ``os.environ``), raising SettingsError on bad input."""
    env = os.environ if env is None else env

    kwargs = Settings.values(env, {"port": default_port})
    if not kwargs["fastpath"]:
        for name in FASTPATHS:
            kwargs[name] = False
    kwargs["service_urls"] = _service_urls(env)
    kwargs["env"] = dict(env)
    settings = Settings(**kwargs)
    _check_download_root(settings)
    return settings


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


def describe_settings(settings: Settings) -> list[SettingInfo]:
    """The framework's ``BUTTERFLY_*`` settings as :meth:`Config.describe` rows, then each
    ``BUTTERFLY_<SVC>_URL`` set; ``butterfly config`` prints them."""
    rows = Settings.describe(settings.env, {"port": settings.port})
    for service, url in sorted(settings.service_urls.items()):
        rows.append(SettingInfo(f"BUTTERFLY_{service.upper()}_URL", url, "env",
                                f"base URL of service {service}", False))
    return rows
