"""Redis clients that work unchanged against Redis, Twemproxy and Redis Cluster.

Twemproxy closes the connection on any command it does not know, including the
``HELLO`` and ``CLIENT SETINFO`` that redis-py sends by default, so every client here
speaks RESP2 with no client-info handshake, never selects a DB and never names itself.
``redis+cluster://`` URLs build a :class:`redis.cluster.RedisCluster`.
"""

from __future__ import annotations

import hashlib
import inspect
from importlib import resources
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import hiredis
import redis
from redis.backoff import ExponentialBackoff
from redis.cluster import RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.retry import Retry

from . import redis_guard

RedisLike = redis.Redis | RedisCluster


def _handshake_kwargs(cls: type) -> dict[str, Any]:
    """The kwargs that stop redis-py from sending HELLO / CLIENT SETINFO (7.x and 8.x)."""
    params = inspect.signature(cls).parameters
    kwargs: dict[str, Any] = {"protocol": 2}
    if "driver_info" in params:
        kwargs["driver_info"] = None
    elif "lib_name" in params:
        kwargs["lib_name"] = None
        kwargs["lib_version"] = None
    return kwargs


def make_redis(url: str, *, socket_timeout: float = 1.0, retries: int = 1,
               watch_sockets: bool = True) -> RedisLike:
    """Build a client for ``url`` (``redis://``, ``rediss://``, ``unix://``, ``redis+cluster://``).

    ``socket_timeout`` bounds the connect and every reply (``BUTTERFLY_REDIS_TIMEOUT``,
    default 1 s: Redis answers in microseconds, so a second means it is not answering).
    ``retries`` (``BUTTERFLY_REDIS_RETRIES``, default 1) applies only to a refused or
    dropped connection, never to a reply that timed out: the command may have run, and
    re-sending a claim or publish would repeat it. A proxy also drops the connection on an
    unsupported command, which redis-py's default policy would hide for seconds.

    Plain Redis and Twemproxy clients fail fast while the server is silent
    (:mod:`butterfly_common.redis_guard`: stall after ``socket_timeout / 2`` without any
    reply, cool down ``socket_timeout``), so a frozen Redis cannot pin every thread.
    ``watch_sockets=False`` (``BUTTERFLY_FASTPATH_BREAKER_SOCKET=0``): no watchdog on
    redis-py's sockets, a silent server is noticed when a read times out.
    """
    parts = urlsplit(url)
    common: dict[str, Any] = {
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": socket_timeout,
        "retry": Retry(ExponentialBackoff(cap=0.2, base=0.02), retries,
                       supported_errors=(RedisConnectionError,)),
        "decode_responses": True,
    }
    if parts.scheme.endswith("+cluster"):
        plain = urlunsplit((parts.scheme.removesuffix("+cluster"), *parts[1:]))
        return RedisCluster.from_url(plain, **common, **_handshake_kwargs(RedisCluster))
    if parts.path not in ("", "/", "/0"):
        # SELECT is not available through Twemproxy or Redis Cluster: refuse rather than
        # silently write to another DB than the one configured.
        raise ValueError(f"redis URL {url!r}: only database 0 is supported")
    base = redis_guard.BASES.get(parts.scheme)
    if base is not None:
        common["connection_class"] = redis_guard.guarded_class(base, socket_timeout / 2,
                                                               socket_timeout, watch_sockets)
    return redis.Redis.from_url(url, **common, **_handshake_kwargs(redis.Redis))


class Script:
    """A Lua script run by EVALSHA, falling back to EVAL on NOSCRIPT.

    ``SCRIPT LOAD`` is rejected by Twemproxy, so redis-py's ``register_script`` cannot be
    used; the first EVAL caches the script on whichever shard the keys hash to.
    """

    def __init__(self, source: str, name: str = "script") -> None:
        self.source = source
        self.name = name
        self.sha = hashlib.sha1(source.encode()).hexdigest()  # noqa: S324 - Redis' own id

    @classmethod
    def from_package(cls, package: str, filename: str) -> Script:
        """Load ``filename`` shipped beside the Python modules of ``package``."""
        source = resources.files(package).joinpath(filename).read_text(encoding="utf-8")
        return cls(source, filename)

    def __call__(self, client: Any, keys: list[str],
                 args: list[Any] | tuple[Any, ...] = ()) -> Any:
        if not keys:
            raise ValueError(f"{self.name}: Twemproxy needs at least one key to route EVAL")
        if isinstance(client, redis.Redis):  # the queue's hot path: no redis-py bookkeeping
            try:
                return RawPipeline(client).execute_command(
                    "EVALSHA", self.sha, len(keys), *keys, *args).execute()[0]
            except NoScriptError:
                return RawPipeline(client).execute_command(
                    "EVAL", self.source, len(keys), *keys, *args).execute()[0]
        try:
            return client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            return client.eval(self.source, len(keys), *keys, *args)

    def __repr__(self) -> str:
        return f"<Script {self.name} {self.sha[:8]}>"


class RawPipeline:
    """A non-transactional pipeline of raw commands on one pooled connection.

    The queue's hot paths (publish, complete) send two or three commands per call; redis-py
    8's ``Pipeline`` spent more CPU on its own bookkeeping (observability hooks, argument
    filtering, per-command reply callbacks) than on packing and parsing them. This sends
    the same bytes: commands packed by hiredis, replies read in order, raw (no callbacks),
    each error reply returned in its place as ``execute(raise_on_error=False)`` does. The
    client's retry policy applies as in redis-py (a dropped connection only).
    """

    __slots__ = ("_client", "_commands")

    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        self._commands: list[tuple[Any, ...]] = []

    def execute_command(self, *args: Any) -> RawPipeline:
        self._commands.append(args)
        return self

    def set(self, name: str, value: Any, px: int | None = None) -> RawPipeline:
        return self.execute_command("SET", name, value, *(("PX", px) if px else ()))

    def zadd(self, name: str, mapping: dict[str, float], nx: bool = False) -> RawPipeline:
        pairs = [x for member, score in mapping.items() for x in (score, member)]
        return self.execute_command("ZADD", name, *(("NX",) if nx else ()), *pairs)

    def execute(self, raise_on_error: bool = True) -> list[Any]:
        commands, self._commands = self._commands, []
        if not commands:
            return []
        payload = b"".join(hiredis.pack_command(c) for c in commands)
        pool = self._client.connection_pool
        conn: Any = pool.get_connection()
        try:
            replies: list[Any] = conn.retry.call_with_retry(
                lambda: self._roundtrip(conn, payload, len(commands)),
                lambda _error: conn.disconnect())
        except BaseException:
            conn.disconnect()  # a reply half read: never hand this connection out again
            raise
        finally:
            pool.release(conn)
        if raise_on_error:
            for reply in replies:
                if isinstance(reply, Exception):
                    raise reply
        return replies

    @staticmethod
    def _roundtrip(conn: Any, payload: bytes, count: int) -> list[Any]:
        conn.send_packed_command([payload])
        if hasattr(conn, "read_replies"):  # a guarded connection (redis_guard.py)
            return list(conn.read_replies(count))
        replies: list[Any] = []
        for _ in range(count):
            try:
                replies.append(conn.read_response())
            except ResponseError as exc:
                replies.append(exc)
        return replies


def pipeline(client: Any) -> Any:
    """A non-transactional pipeline: :class:`RawPipeline` on a plain client (Redis or
    Twemproxy), redis-py's own on a cluster client, which routes each command by its key."""
    if isinstance(client, redis.Redis):
        return RawPipeline(client)
    return client.pipeline(transaction=False)
