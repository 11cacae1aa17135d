"""Per-topic limits: how many messages of a topic run at once, and how many start per window.

Enforced by ``claim.lua`` itself, fleet-wide: a claim pops no more than the limits allow,
so a held-back message simply stays queued (no claim-then-give-back). The limits live in
the topic's ``bc:{T}:limits`` HASH (same hash tag, so one script still covers the claim);
a topic without that hash pays one HMGET of a missing key per claim, nothing on
complete / fail / reap / release.

- ``max_running``: at most this many messages of the topic started (claimed and not yet
  completed, failed, reaped, released or deleted) at once, across every consumer. The
  count is the ``started`` ZSET's size, so every script that ends a started message frees
  its slot without knowing about limits.
- ``rate`` per ``rate_window`` seconds: a **fixed window** aligned to the Redis server
  clock (window start = now - now mod window). At most ``rate`` claims start in each
  window; across a window boundary up to ``2 * rate`` may start within one window's span.

Concurrency groups ("concurrency keys"): a message published with a ``group`` (a tenant,
a customer) waits in its group's own ready set, and a claim serves the groups
**round-robin**, one message per group per turn, so one group's 100 000 messages do not
starve another's 10. ``group_max_running`` caps every group's started messages, a
``group_limits`` entry one group's (overriding it); a group at its cap is passed over
without claiming its message (no claim-then-give-back). Ungrouped messages of the topic
are claimed first, exactly as without groups (a topic that never sees a group pays one
LLEN of a missing key in a claim that found too few ungrouped ids, nothing else).
Within a group, priorities hold (higher first, FIFO within one). The per-group started
counts live in ``bc:{T}:grun``, kept by every script that ends a started message.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .keys import check_group

#: Largest ``max_running`` / ``rate``: far above any fleet, far below Lua's exact integers.
MAX_LIMIT = 1_000_000
#: ``rate_window`` bounds, seconds (a window is whole milliseconds of the server clock).
MIN_WINDOW = 0.001
MAX_WINDOW = 86400.0
#: The window a ``rate`` without ``rate_window`` counts in.
DEFAULT_WINDOW = 1.0
#: Most per-group overrides one topic may have (each is read by a claim serving it).
MAX_GROUP_LIMITS = 1000


@dataclass(frozen=True, slots=True)
class Limits:
    """A topic's limits (None: that limit is off) and its live figures: ``running``
    (started now), ``window_used`` (claims in the current rate window), ``held`` (claims a
    limit cut while messages were ready, since the limits were set) and when the last was
    (``held_at``), when and by whom the limits were set."""

    max_running: int | None = None
    rate: int | None = None
    rate_window: float | None = None
    running: int = 0
    window_used: int = 0
    held: int = 0
    held_at: float | None = None
    set_at: float | None = None
    set_by: str = ""
    #: Every group's cap, and per-group caps overriding it (see the module docstring).
    group_max_running: int | None = None
    group_limits: dict[str, int] = field(default_factory=dict)
    #: Claims in which a group at its cap was passed over (its messages ready), and when
    #: the last was; groups with ready messages now; started messages per group now.
    group_held: int = 0
    group_held_at: float | None = None
    groups_ready: int = 0
    group_running: dict[str, int] = field(default_factory=dict)

    @property
    def limited(self) -> bool:
        """True when any limit is on."""
        return (self.max_running is not None or self.rate is not None
                or self.group_max_running is not None or bool(self.group_limits))

    def to_dict(self) -> dict[str, Any]:
        """The wire shape (times in epoch seconds)."""
        return {"max_running": self.max_running, "rate": self.rate,
                "rate_window": self.rate_window, "running": self.running,
                "window_used": self.window_used, "held": self.held,
                "held_at": self.held_at, "set_at": self.set_at, "set_by": self.set_by,
                "group_max_running": self.group_max_running,
                "group_limits": dict(self.group_limits), "group_held": self.group_held,
                "group_held_at": self.group_held_at, "groups_ready": self.groups_ready,
                "group_running": dict(self.group_running)}


def _count(name: str, value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_LIMIT:
        raise ValueError(f"{name} must be an integer 1..{MAX_LIMIT} (or null: no limit): "
                         f"{value!r}")
    return value


def check_limits(max_running: object, rate: object,
                 rate_window: object) -> tuple[int | None, int | None, int | None]:
    """``(max_running, rate, window_ms)`` checked, or ValueError saying what is wrong.

    Counts are integers 1..MAX_LIMIT (a bool or a float is refused, not rounded); the
    window is seconds in MIN_WINDOW..MAX_WINDOW, whole milliseconds, only with a rate
    (DEFAULT_WINDOW without one)."""
    running = _count("max_running", max_running)
    per = _count("rate", rate)
    if rate_window is None:
        return running, per, None if per is None else round(DEFAULT_WINDOW * 1000)
    if per is None:
        raise ValueError("rate_window needs a rate")
    if (isinstance(rate_window, bool) or not isinstance(rate_window, int | float)
            or not MIN_WINDOW <= rate_window <= MAX_WINDOW
            or abs(rate_window * 1000 - round(rate_window * 1000)) > 1e-6):
        raise ValueError(f"rate_window must be {MIN_WINDOW:g}..{MAX_WINDOW:g} seconds in "
                         f"whole milliseconds: {rate_window!r}")
    return running, per, round(rate_window * 1000)


def check_group_limits(group_max_running: object,
                       group_limits: object) -> tuple[int | None, dict[str, int]]:
    """``(group_max_running, {group: cap})`` checked, or ValueError saying what is wrong:
    counts as for ``max_running``, group names as a publish's ``group``, at most
    MAX_GROUP_LIMITS entries."""
    every = _count("group_max_running", group_max_running)
    if group_limits is None:
        return every, {}
    if not isinstance(group_limits, dict):
        raise ValueError(f"group_limits must be an object of group: max_running: "
                         f"{group_limits!r}")
    if len(group_limits) > MAX_GROUP_LIMITS:
        raise ValueError(f"group_limits: at most {MAX_GROUP_LIMITS} groups, not "
                         f"{len(group_limits)}")
    caps: dict[str, int] = {}
    for name, cap in group_limits.items():
        group = check_group(name)
        assert group is not None
        value = _count(f"group_limits[{name!r}]", cap)
        if value is None:
            raise ValueError(f"group_limits[{name!r}] must be an integer 1..{MAX_LIMIT}")
        caps[group] = value
    return every, caps


def from_reply(reply: list[Any]) -> Limits:
    """A :class:`Limits` from ``limits.lua``'s reply."""
    def num(value: Any) -> int | None:
        return int(value) if value not in (None, "", b"") else None

    def text(value: Any) -> str:
        return value.decode() if isinstance(value, bytes) else str(value or "")

    def pairs(flat: list[Any]) -> dict[str, int]:
        return {text(flat[i]): int(flat[i + 1]) for i in range(0, len(flat), 2)}

    (max_running, rate, window, running, used, held, held_at, set_at, set_by, gmax, gheld,
     gheld_at, gready, caps, grun) = reply
    window_ms, held_ms, set_ms, gheld_ms = num(window), num(held_at), num(set_at), num(gheld_at)
    return Limits(max_running=num(max_running), rate=num(rate),
                  rate_window=None if window_ms is None else window_ms / 1000,
                  running=int(running), window_used=int(used), held=int(held or 0),
                  held_at=None if held_ms is None else held_ms / 1000,
                  set_at=None if set_ms is None else set_ms / 1000, set_by=text(set_by),
                  group_max_running=num(gmax), group_limits=pairs(caps),
                  group_held=int(gheld or 0),
                  group_held_at=None if gheld_ms is None else gheld_ms / 1000,
                  groups_ready=int(gready), group_running=pairs(grun))
