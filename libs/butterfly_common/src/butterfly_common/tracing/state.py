"""Where the framework's own calls (httpclient, logs) find the tracer: a no-op while
tracing is off in this process, the tracing middleware once it made its provider."""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext
from typing import Any


class _Off:
    """Stands for the tracer while tracing is off in this process."""

    def client_span(self, method: str, url: str, headers: dict[str, str]
                    ) -> AbstractContextManager[Any]:
        return nullcontext()

    def log_fields(self) -> str:
        return ""

    def span(self, name: str, attributes: Mapping[str, Any] | None = None,
             parent: str = "") -> AbstractContextManager[Any]:
        return nullcontext()

    def traceparent(self) -> str:
        return ""


_current: Any = _Off()


def activate(tracer: Any) -> None:
    """Route :func:`client_span` / :func:`log_fields` to ``tracer`` (the otel module's)."""
    global _current
    _current = tracer


def deactivate() -> None:
    global _current
    _current = _Off()


def client_span(method: str, url: str, headers: dict[str, str]
                ) -> AbstractContextManager[Any]:
    """A CLIENT span around an outgoing call, its ``traceparent`` added to ``headers``."""
    return _current.client_span(method, url, headers)  # type: ignore[no-any-return]


def log_fields() -> str:
    """``trace_id:<hex>\\tspan_id:<hex>`` of the active span, or "" (no span, or off)."""
    return _current.log_fields()  # type: ignore[no-any-return]


def span(name: str, attributes: Mapping[str, Any] | None = None, parent: str = ""
         ) -> AbstractContextManager[Any]:
    """An INTERNAL span around a block of a service's own work (a scheduler fire, a flow
    step, a store write), current inside the block; ``parent``: a stored ``traceparent``
    to continue (a flow's, kept in its record), else the current span. Yields the span,
    or None while tracing is off."""
    return _current.span(name, attributes, parent)  # type: ignore[no-any-return]


def traceparent() -> str:
    """The W3C ``traceparent`` of the current span, to store and continue later ("" when
    off or outside a span)."""
    return _current.traceparent()  # type: ignore[no-any-return]
