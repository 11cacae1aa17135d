"""The one poll loop: read until a condition holds or time runs out, backing off.

Twemproxy offers neither blocking pops nor pub/sub, so waiting for a queue message or a
version change means reading again. Every such wait in Butterfly (``mq.wait``,
``coordination.Version.wait_change``) goes through :func:`poll_until`: the first read at
once, the next after ``first`` seconds, each pause ``growth`` times the last up to
``cap``, never sleeping past the deadline.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def poll_until(read: Callable[[], T], done: Callable[[T], bool], timeout: float, *,
               first: float = 0.01, growth: float = 1.5, cap: float = 0.2) -> T:
    """Call ``read`` until ``done(value)`` or ``timeout`` seconds passed; the last value."""
    deadline = time.monotonic() + max(0.0, timeout)
    pause = first
    value = read()
    while not done(value):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        time.sleep(min(pause, left))
        pause = min(pause * growth, cap)
        value = read()
    return value
