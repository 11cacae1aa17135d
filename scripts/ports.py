"""Who holds a TCP port: so a second `make run` names the process in its way and stops."""

from __future__ import annotations

import os
import socket


def listening(port: int, host: str = "127.0.0.1") -> bool:
    """True when something accepts connections on ``host:port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def holder(port: int) -> str:
    """``pid 123 (cmdline)`` of the process listening on ``port``, as far as we may see.

    A forking server (gunicorn) shares the socket with its workers; its master is named.
    """
    import psutil

    try:
        pids = {c.pid for c in psutil.net_connections(kind="inet")
                if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port}
    except psutil.AccessDenied:
        pids = set()
    procs = []
    for pid in filter(None, pids):
        try:
            proc = psutil.Process(pid)
            cmdline = proc.cmdline()
            parent = proc.parent()
            while parent is not None and parent.cmdline() == cmdline:
                proc = parent  # a forked worker: name its master
                parent = proc.parent()
            words = [os.path.basename(w) if w.startswith("/") else w for w in cmdline]
            procs.append((proc.create_time(), proc.pid, " ".join(words) or proc.name()))
        except psutil.Error:
            continue
    if not procs:
        return "another program (not visible to this user)"
    _, pid, cmdline = min(procs)
    if len(cmdline) > 90:
        cmdline = cmdline[:87] + "..."
    return f"pid {pid} ({cmdline})"
