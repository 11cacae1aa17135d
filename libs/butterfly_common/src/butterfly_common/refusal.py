"""``Refusal``: a handler's way of saying no, answered by the Gateway like a bad parameter.

A handler (or anything it calls) raises ``Refusal(stat, reason)``; the caller gets
``{"stat": stat, **data}``, the reason in ``x-reason`` and an HTTP code chosen by the
policy documented in docs/handlers.md ("Refusals"): the refusal's own ``http``, else the
route's ``statuses`` map, else 400. ``BUTTERFLY_LEGACY_STATUS=1`` answers 200 instead.
Queue callers see the same stat in the message's result.
"""

from __future__ import annotations

from typing import Any

#: The HTTP code of a refusal whose class is not given: the caller's request was wrong.
DEFAULT_HTTP = 400


class Refusal(Exception):
    """A call the service will not carry out: ``stat`` for programs, ``reason`` for people.

    ``data`` is answered beside the stat (e.g. the current state of what was asked
    about); ``http`` is the class of the refusal: 400 bad input, 401/403 auth, 404 not
    found, 409 conflict or wrong state, 413 too large, 503 a dependency is down.
    """

    def __init__(self, stat: str, reason: str, data: dict[str, Any] | None = None,
                 http: int | None = None) -> None:
        super().__init__(reason)
        if http is not None and not 400 <= http <= 599:
            raise ValueError(f"a refusal's http code is a 4xx or 5xx, not {http}")
        self.stat = stat
        self.reason = reason
        self.data: dict[str, Any] = dict(data or {})
        self.http = http

    def __repr__(self) -> str:
        return f"Refusal({self.stat!r}, {self.reason!r})"
