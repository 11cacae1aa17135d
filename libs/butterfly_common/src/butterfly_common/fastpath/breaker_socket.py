"""The Redis breaker's look at, and hand on, a connection's socket.

Replaces: waiting for redis-py's own read timeout. redis-py keeps a connection's socket in
the private attribute ``Connection._sock`` and offers no public way to poll it or to wake
a thread blocked reading it. The breaker's watchdog (:mod:`butterfly_common.redis_guard`)
needs both once a server has gone silent for half the timeout:

- :func:`any_readable`: is a reply already waiting in one of the sockets? Then the server
  is alive and only this process is slow (CPU or GIL starved): do not trip.
- :func:`abort`: shut the socket of a read still waiting, so its thread gets redis-py's
  ``ConnectionError`` at once instead of after the full read timeout.

With ``BUTTERFLY_FASTPATH_BREAKER_SOCKET=0`` the watchdog is not used: the breaker opens
when a connect or read times out (redis-py's public ``socket_timeout``), the reads already
waiting end at that timeout, and new commands fail fast as before.
"""

from __future__ import annotations

import contextlib
import select
import socket
from typing import Any


def sock_of(conn: Any) -> socket.socket | None:
    """redis-py's socket of ``conn`` (the private ``_sock``), None while not connected."""
    return getattr(conn, "_sock", None)


def any_readable(conns: list[Any]) -> bool:
    """Whether a reply is waiting in any of the sockets of ``conns``."""
    poller = select.poll()  # no FD_SETSIZE limit, unlike select()
    try:
        for conn in conns:
            sock = sock_of(conn)
            if sock is not None:
                poller.register(sock.fileno(), select.POLLIN)
        return bool(poller.poll(0))
    except (OSError, ValueError):  # a socket closed meanwhile: that read is over anyway
        return True


def abort(conn: Any) -> None:
    """Wake a thread blocked reading ``conn``: its recv returns and redis-py raises."""
    sock = sock_of(conn)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
