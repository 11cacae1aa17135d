"""The ``progress`` field of a message record: how far the running attempt got.

A handler running from the queue reports ``req.progress(done, total, note)``; the consumer
stores it in the record (``Broker.progress``, fenced like a completion) and every reader
of the record (``mq.get``, baichuan's ``msg_get``, canghai's message page) sees it. The
values are clamped here, once, so a reader can trust them: ``0 <= done <= total``, both
at most :data:`MAX_COUNT` (exact in a JavaScript number), and the note one line of at most
:data:`MAX_NOTE` characters.
"""

from __future__ import annotations

import json
import operator
from typing import Any

MAX_NOTE = 200
MAX_COUNT = 2**53 - 1


def _count(value: Any, name: str) -> int:
    """An integer count clamped to [0, MAX_COUNT]; anything else is a caller's bug."""
    if isinstance(value, bool):
        raise TypeError(f"progress {name} must be an int, not bool")
    try:
        number = operator.index(value)
    except TypeError:
        raise TypeError(f"progress {name} must be an int, not "
                        f"{type(value).__name__}") from None
    return max(0, min(number, MAX_COUNT))


def clean_note(note: Any) -> str:
    """One printable line of at most MAX_NOTE characters (lone surrogates replaced)."""
    text = str(note)[:MAX_NOTE]
    text = text.encode("utf-8", "replace").decode("utf-8")
    return "".join(c if c.isprintable() else " " for c in text)


def normalize(done: Any, total: Any, note: Any = "") -> dict[str, Any]:
    """The record's progress value: ``{"done", "total", "note"}``, clamped (see module).

    Raises TypeError when ``done`` or ``total`` is not an integer.
    """
    top = _count(total, "total")
    return {"done": min(_count(done, "done"), top), "total": top, "note": clean_note(note)}


def parse(text: str | None) -> dict[str, Any] | None:
    """The stored progress (JSON text) as a reader gets it; None when none was stored or
    it cannot be read (written by something else than :func:`normalize`)."""
    if not text:
        return None
    try:
        value = json.loads(text)
        if not isinstance(value, dict):
            return None
        return normalize(value.get("done", 0), value.get("total", 0), value.get("note", ""))
    except (ValueError, TypeError, RecursionError):
        return None
