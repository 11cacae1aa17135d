"""``Refusal``: a handler's own "no" to a request, answered like a bad-params error.

A handler raises ``Refusal(stat, reason)`` instead of returning an error stat by hand: the
Gateway answers ``{"stat": stat, **data}`` with ``x-reason: reason`` and the HTTP status
``http``, else the route's ``statuses`` map, else 400 (200 with ``BUTTERFLY_LEGACY_STATUS=1``).
"""

from __future__ import annotations

from typing import Any


class Refusal(Exception):
    """A refused request: ``stat`` goes in the body, ``reason`` in ``x-reason``."""

    def __init__(self, stat: str, reason: str, data: dict[str, Any] | None = None,
                 http: int | None = None) -> None:
        super().__init__(reason)
        self.stat = stat
        self.reason = reason
        self.data = dict(data or {})
        self.http = http
