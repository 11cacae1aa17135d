"""Fail fast while a Redis server does not answer (frozen, partitioned, down).

A Redis that stops answering without closing its sockets (``SIGSTOP``, a hung VM, a
dropped network path) makes every command wait for its read timeout. Under gunicorn
that pins every request thread on Redis, and even ``/healthz``, which never touches
Redis, waits in line for a free thread. So each server address gets a small breaker:

- **stall**: while some command has waited longer than ``stall_after`` seconds and no
  reply at all came back from that server in that time, the server is taken as frozen.
  A watchdog thread then (unless a reply is already waiting in a socket: then only our
  process is slow) *opens* the breaker and shuts the sockets of the commands still
  waiting, so their threads get a ``ConnectionError`` at once instead of after the full
  read timeout. Redis is single-threaded: a busy server still answers *something* every
  few milliseconds, and behind Twemproxy a frozen shard does not trip it while the other
  shards answer.
- **open**: for ``cooldown`` seconds every new command fails at once with
  ``ConnectionError("redis ... not answering ...")``; a connect or read that timed out
  opens it too (a *refused* connection does not: it fails at once by itself, and the
  first command after a restart must get through).
- **half-open**: after the cooldown one command goes through as a probe (the others
  still fail fast); its reply closes the breaker, its failure opens it again. So
  everything resumes by itself within about one cooldown of the server answering again.

The watchdog's look at the sockets goes through redis-py's private ``Connection._sock``
(:mod:`.fastpath.breaker_socket`). With ``BUTTERFLY_FASTPATH_BREAKER_SOCKET=0`` there is no
watchdog: a stall is only noticed when a read times out (the full timeout), which opens
the breaker as above.

A command failed by the breaker may still run on the server later (it was sent, like
any command whose reply timed out): at-least-once, as everywhere in the queue protocol.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from typing import Any

from redis.connection import Connection, SSLConnection, UnixDomainSocketConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .fastpath import breaker_socket

log = logging.getLogger(__name__)

WATCH_EVERY = 0.05


class Breaker:
    """The state of one server address (shared by every client of the process)."""

    def __init__(self, address: str, stall_after: float, cooldown: float,
                 watch: bool = True) -> None:
        self.address = address
        #: the watchdog may look at and shut the sockets (fastpath.breaker_socket)
        self.watch = watch
        self.stall_after = stall_after
        self.cooldown = cooldown
        self._lock = threading.Lock()
        self._waiting: dict[int, tuple[Any, float]] = {}
        self._last_reply = time.monotonic()
        self._open_until = 0.0
        self._probe_since: float | None = None
        self._prober = 0
        self._reason = ""
        self.trips = 0

    # -- used by the connection ---------------------------------------------------------
    def admit(self) -> None:
        """Raise ConnectionError while open (or while another call probes)."""
        now = time.monotonic()
        me = threading.get_ident()
        with self._lock:
            if not self._open_until:
                return
            if now < self._open_until:
                pass
            elif self._probe_since is not None and self._prober == me:
                return  # the probe's own next step (connect, then send, then read)
            elif self._probe_since is None or now - self._probe_since > 2 * self.stall_after:
                self._probe_since, self._prober = now, me  # this call is the probe
                return
        raise RedisConnectionError(f"redis {self.address} not answering ({self._reason}); "
                                   f"failing fast, retrying every {self.cooldown:g}s")

    def waiting(self, conn: Any) -> None:
        if not self.watch:  # no watchdog: the read's own timeout ends the wait
            return
        with self._lock:
            self._waiting[id(conn)] = (conn, time.monotonic())
        _watchdog.wake()

    def replied(self, conn: Any) -> None:
        with self._lock:
            self._waiting.pop(id(conn), None)
            self._last_reply = time.monotonic()
            if self._open_until:
                log.warning("redis %s answers again", self.address)
            self._open_until = 0.0
            self._probe_since = None

    def alive(self) -> None:
        """A reply came, more are due on the same connection (see ``read_replies``)."""
        self._last_reply = time.monotonic()

    def failed(self, conn: Any, exc: BaseException) -> None:
        """A connect or read failed without a reply. Only silence (a timeout) opens the
        breaker: a refused connection fails at once anyway, and must not delay the first
        command after the server comes back."""
        with self._lock:
            self._waiting.pop(id(conn), None)
        if isinstance(exc, RedisTimeoutError):
            self.trip(f"{type(exc).__name__}: {exc}"[:160])

    def done(self, conn: Any) -> None:
        """The read ended some other way (a caller's exception): just forget it."""
        with self._lock:
            self._waiting.pop(id(conn), None)

    def ended(self, conn: Any, exc: BaseException) -> None:
        """A read on ``conn`` raised ``exc``: an error reply is a reply (the server, or
        the proxy, is alive); a connection error or timeout is a failure; anything else
        (a caller's exception) just ends the wait."""
        if isinstance(exc, ResponseError):
            self.replied(conn)
        elif isinstance(exc, RedisConnectionError | RedisTimeoutError):
            self.failed(conn, exc)
        else:
            self.done(conn)

    # -- state changes ------------------------------------------------------------------
    def trip(self, reason: str) -> None:
        with self._lock:
            if self._open_until and self._probe_since is None:
                return  # already open
            self._open_until = time.monotonic() + self.cooldown
            self._probe_since = None
            self._reason = reason
            self.trips += 1
        log.warning("redis %s: %s; failing fast for %gs", self.address, reason, self.cooldown)

    def check_stall(self, now: float) -> bool:
        """Watchdog step: trip and abort waiting reads when the server went silent.
        Returns whether anything is waiting (the watchdog sleeps otherwise)."""
        with self._lock:
            if not self._waiting:
                return False
            oldest = min(since for _, since in self._waiting.values())
            quiet = now - max(oldest, self._last_reply)
            waiting = [conn for conn, _ in self._waiting.values()]
        if quiet <= self.stall_after:
            return True
        if breaker_socket.any_readable(waiting):
            # the reply is there, our own process is just slow to read it (CPU or GIL
            # starved): the server is alive, do not trip
            with self._lock:
                self._last_reply = now
            return True
        with self._lock:
            victims = [conn for conn, _ in self._waiting.values()]
            self._waiting.clear()
        self.trip(f"no reply for {quiet:.2f}s")
        for conn in victims:
            breaker_socket.abort(conn)
        return True


class _Watchdog:
    """One daemon thread for the process, idle while no command waits."""

    def __init__(self) -> None:
        self._breakers: weakref.WeakSet[Breaker] = weakref.WeakSet()
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def add(self, breaker: Breaker) -> None:
        self._breakers.add(breaker)

    def wake(self) -> None:
        if self._wake.is_set():  # already watching: the common case costs one check
            return
        if self._thread is None or not self._thread.is_alive():
            with self._lock:
                if self._thread is None or not self._thread.is_alive():
                    self._thread = threading.Thread(target=self._run, daemon=True,
                                                    name="bf-redis-watchdog")
                    self._thread.start()
        self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            if not self._step():
                self._wake.clear()
                if self._step():  # a read began between the step and the clear
                    self._wake.set()
            time.sleep(WATCH_EVERY)

    def _step(self) -> bool:
        busy = False
        now = time.monotonic()
        for breaker in list(self._breakers):
            try:
                busy = breaker.check_stall(now) or busy
            except Exception:  # never let the watchdog die
                log.exception("redis watchdog step failed")
        return busy


_watchdog = _Watchdog()
_breakers: dict[tuple[str, float, float, bool], Breaker] = {}
_breakers_lock = threading.Lock()


def breaker_for(address: str, stall_after: float, cooldown: float,
                watch: bool = True) -> Breaker:
    """The process's breaker of ``address`` (one per address, timing and watching)."""
    key = (address, stall_after, cooldown, watch)
    with _breakers_lock:
        breaker = _breakers.get(key)
        if breaker is None:
            breaker = _breakers[key] = Breaker(address, stall_after, cooldown, watch)
            _watchdog.add(breaker)
        return breaker


class GuardedMixin:
    """Hooks a redis-py connection class into its server's :class:`Breaker`.

    Set ``guard_stall`` / ``guard_cooldown`` on a subclass (see :func:`guarded_class`).
    """

    guard_stall: float = 0.5
    guard_cooldown: float = 1.0
    guard_watch: bool = True
    _breaker: Breaker | None = None

    def _guard(self) -> Breaker:
        breaker = self._breaker
        if breaker is None:
            address = getattr(self, "path", "") or f"{self.host}:{self.port}"  # type: ignore[attr-defined]
            breaker = self._breaker = breaker_for(address, self.guard_stall,
                                                  self.guard_cooldown, self.guard_watch)
        return breaker

    def connect_check_health(self, *args: Any, **kwargs: Any) -> None:
        # every way of (re)connecting goes through here in redis-py 7.x/8.x
        if self.is_connected:  # type: ignore[attr-defined]  # redis-py's public property
            return
        breaker = self._guard()
        breaker.admit()
        try:
            super().connect_check_health(*args, **kwargs)  # type: ignore[misc]
        except (RedisConnectionError, RedisTimeoutError) as exc:
            breaker.failed(self, exc)
            raise

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        self._guard().admit()
        super().send_packed_command(command, check_health)  # type: ignore[misc]

    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        breaker = self._guard()
        breaker.waiting(self)
        try:
            response = super().read_response(*args, **kwargs)  # type: ignore[misc]
        except BaseException as exc:
            breaker.ended(self, exc)
            raise
        breaker.replied(self)
        return response

    def read_replies(self, count: int) -> list[Any]:
        """``count`` replies of a pipeline, error replies in place, watched as one wait:
        the breaker's bookkeeping once per round trip instead of once per reply (each
        reply still counts as a sign of life)."""
        breaker = self._guard()
        breaker.waiting(self)
        replies: list[Any] = []
        try:
            for _ in range(count):
                try:
                    replies.append(super().read_response())  # type: ignore[misc]
                except ResponseError as exc:
                    replies.append(exc)
                breaker.alive()
        except BaseException as exc:
            breaker.ended(self, exc)
            raise
        breaker.replied(self)
        return replies


_classes: dict[tuple[type, float, float, bool], type] = {}


def guarded_class(base: type, stall_after: float, cooldown: float,
                  watch: bool = True) -> type:
    """A subclass of redis-py's ``base`` connection class wired to the breaker; ``watch``:
    the watchdog may release a silent server's reads (``BUTTERFLY_FASTPATH_BREAKER_SOCKET``)."""
    key = (base, stall_after, cooldown, watch)
    cls = _classes.get(key)
    if cls is None:
        cls = _classes[key] = type(f"Guarded{base.__name__}", (GuardedMixin, base),
                                   {"guard_stall": stall_after, "guard_cooldown": cooldown,
                                    "guard_watch": watch})
    return cls


BASES = {"redis": Connection, "rediss": SSLConnection, "unix": UnixDomainSocketConnection}
