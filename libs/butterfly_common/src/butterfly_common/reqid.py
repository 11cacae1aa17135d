"""Request ids: 16 upper-case hex digits, time-ordered and unique across processes and hosts.

Layout of the 64 bits: 40 bits of milliseconds since 2025-01-01 (good until 2059), a 12-bit
node and a 12-bit sequence. The node is the pid xor a per-host salt, so two live processes
on one host differ whenever their pids differ modulo 4096; hosts differ by their salt. The
sequence orders ids within one millisecond; past 4096 in one millisecond we wait for the
next one rather than repeat.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import threading
import time

EPOCH_MS = 1_735_689_600_000  # 2025-01-01T00:00:00Z
#: The reqid logged outside any call (the log context's default). Never sent on: a call
#: made outside a request gets a fresh id from its callee instead of this placeholder.
NO_REQID = "X" * 16
_VALID = re.compile(r"^[0-9A-F]{16}$")


def _host_salt() -> int:
    seed = socket.gethostname()
    try:
        with open("/etc/machine-id", encoding="ascii") as fh:
            seed += fh.read().strip()
    except OSError:
        pass
    return int.from_bytes(hashlib.sha256(seed.encode()).digest()[:2], "big")


class ReqIdGenerator:
    """Thread-safe generator; re-derives its node after ``fork`` (gunicorn workers)."""

    def __init__(self) -> None:
        self._salt = _host_salt()
        self._reset()

    def _reset(self) -> None:
        self._lock = threading.Lock()  # a fresh lock: another thread may hold it at fork
        self._node = (os.getpid() ^ self._salt) & 0xFFF
        self._last_ms = -1
        self._seq = 0

    def __call__(self) -> str:
        with self._lock:
            now = int(time.time() * 1000) - EPOCH_MS
            if now < self._last_ms:  # clock stepped back: keep order, borrow from the last ms
                now = self._last_ms
            if now == self._last_ms:
                self._seq += 1
                if self._seq > 0xFFF:
                    while now <= self._last_ms:
                        time.sleep(0.0001)
                        now = int(time.time() * 1000) - EPOCH_MS
                    self._seq = 0
            else:
                self._seq = 0
            self._last_ms = now
            value = ((now & 0xFF_FFFF_FFFF) << 24) | (self._node << 12) | self._seq
        return f"{value:016X}"


new_reqid = ReqIdGenerator()
os.register_at_fork(after_in_child=new_reqid._reset)


def is_valid_reqid(value: str | None) -> bool:
    """True for a caller's id we may keep: exactly 16 upper-case hex digits."""
    return value is not None and _VALID.match(value) is not None


def reqid_time(reqid: str) -> float:
    """The Unix time (seconds) an id was made at, for logs and debugging."""
    return ((int(reqid, 16) >> 24) + EPOCH_MS) / 1000.0
