"""The limits form's text fields as ``Broker.set_limits`` arguments, or why they are not.

A browser sends text: this turns it into counts and seconds (empty: that limit is off) and
says what is wrong as an i18n key with its values, so the page can show the error in the
reader's language instead of a 400 page (or the broker's ValueError as a 500).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from butterfly_common.mq.limits import (
    MAX_GROUP_LIMITS,
    MAX_LIMIT,
    MAX_WINDOW,
    MIN_WINDOW,
    check_group_limits,
    check_limits,
)

#: longer than any valid value: refused before parsing (no giant ints)
MAX_CHARS = 24
#: the per-group caps' text area, at most (MAX_GROUP_LIMITS lines of a long name and cap)
MAX_GROUP_TEXT = MAX_GROUP_LIMITS * 96


class LimitsInputError(ValueError):
    """A field the broker would refuse: ``key`` is the i18n label, ``fmt`` its values
    (``field``: the name of the field at fault, itself an i18n key)."""

    def __init__(self, key: str, **fmt: Any) -> None:
        super().__init__(key)
        self.key, self.fmt = key, fmt

    def say(self, translate: Callable[..., str], lang: str) -> str:
        """The error in ``lang`` (``translate`` is the console's i18n lookup)."""
        fmt = dict(self.fmt)
        if "field" in fmt:
            fmt["field"] = translate(lang, fmt["field"])
        return translate(lang, self.key, **fmt)


@dataclass(frozen=True)
class LimitsInput:
    max_running: int | None = None
    rate: int | None = None
    rate_window: float | None = None
    group_max_running: int | None = None
    group_limits: dict[str, int] = field(default_factory=dict)

    def detail(self) -> str:
        """The audit log's words for what was set."""
        words = (f"max_running={self.max_running} rate={self.rate} "
                 f"rate_window={self.rate_window}")
        if self.group_max_running is not None or self.group_limits:
            caps = ",".join(f"{g}:{n}" for g, n in sorted(self.group_limits.items()))
            words += f" group_max_running={self.group_max_running} group_limits={caps or '-'}"
        return words


def group_lines(caps: dict[str, int]) -> str:
    """Per-group caps as the form's text area shows them: ``group=cap`` a line."""
    return "\n".join(f"{g}={n}" for g, n in sorted(caps.items()))


def _count(name: str, text: str) -> int | None:
    if not text:
        return None
    if len(text) > MAX_CHARS or not text.lstrip("+-").isdigit() or not text.isascii():
        raise LimitsInputError("limit_not_whole", field=name)
    value = int(text)
    if not 1 <= value <= MAX_LIMIT:
        raise LimitsInputError("limit_range", field=name, hi=MAX_LIMIT)
    return value


def _window(text: str) -> float | None:
    if not text:
        return None
    try:
        value = float(text) if len(text) <= MAX_CHARS and text.isascii() else math.nan
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise LimitsInputError("window_not_number")
    if not MIN_WINDOW <= value <= MAX_WINDOW or \
            abs(value * 1000 - round(value * 1000)) > 1e-6:
        raise LimitsInputError("window_range", lo=f"{MIN_WINDOW:g}", hi=f"{MAX_WINDOW:g}")
    return value


def _group_caps(text: str) -> dict[str, int]:
    """``group=cap`` lines (blank lines skipped) as {group: cap}; the names are checked by
    the broker's rule in :func:`parse`."""
    if len(text) > MAX_GROUP_TEXT:
        raise LimitsInputError("group_limits_bad", line=text[:40])
    caps: dict[str, int] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        name, sep, cap = line.rpartition("=")
        if not sep or not name.strip():
            raise LimitsInputError("group_limits_bad", line=line[:60])
        value = _count("group_limits_field", cap.strip())
        if value is None:
            raise LimitsInputError("group_limits_bad", line=line[:60])
        caps[name.strip()] = value
    return caps


def parse(form: Any) -> LimitsInput:
    """``max_running``, ``rate``, ``rate_window``, ``group_max_running`` and
    ``group_limits`` (``group=cap`` lines) of ``form`` checked as the broker checks them,
    else LimitsInputError (its ``field`` is the field's name)."""
    names = ("max_running", "rate", "rate_window", "group_max_running")
    raw = {k: (form.get(k) or "").strip() for k in names}
    running = _count("max_running", raw["max_running"])
    rate = _count("rate", raw["rate"])
    window = _window(raw["rate_window"])
    if window is not None and rate is None:
        raise LimitsInputError("window_needs_rate")
    every = _count("group_max_running", raw["group_max_running"])
    caps = _group_caps(form.get("group_limits") or "")
    try:
        check_limits(running, rate, window)  # the broker's own rule has the last word
        check_group_limits(every, caps)
    except ValueError as exc:
        raise LimitsInputError("limits_refused", why=str(exc)) from None
    return LimitsInput(running, rate, window, every, caps)
