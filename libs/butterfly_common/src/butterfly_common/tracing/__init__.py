"""OpenTelemetry tracing, optional: the ``butterfly-common[otel]`` extra plus an exporter.

Off, it costs nothing: without the extra installed, or without an exporter configured
(``OTEL_EXPORTER_OTLP_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``, or
``OTEL_TRACES_EXPORTER=console|none``), or with ``OTEL_SDK_DISABLED=true``, no middleware
is added and nothing of OpenTelemetry is imported. On, :mod:`.otel` adds one middleware
(server, producer, consumer and settle spans; docs/operations.md lists them) and client
spans to :class:`~butterfly_common.httpclient.ServiceClient`.

The standard ``OTEL_*`` variables configure it, declared here (:class:`TracingConfig`) so
``butterfly config`` and docs/configuration.md show them like every other setting.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib.util import find_spec
from typing import TYPE_CHECKING

from .config import SAMPLERS, TracingConfig
from .state import activate, client_span, deactivate, log_fields, span, traceparent

if TYPE_CHECKING:
    from ..middleware.base import Middleware
    from ..settings import Settings

def installed() -> bool:
    """The ``otel`` extra (the OpenTelemetry SDK) is importable."""
    return find_spec("opentelemetry") is not None and find_spec("opentelemetry.sdk") is not None


def config_of(env: Mapping[str, str]) -> TracingConfig:
    """The tracing config of ``env`` (SettingsError naming a bad variable)."""
    return TracingConfig.from_env(env)


def middleware_for(settings: Settings, service_name: str) -> list[Middleware]:
    """``[the tracing middleware]`` when tracing is wanted and installed, else ``[]``.
    Wanted but not installed is a SettingsError: an operator who set an endpoint expects
    traces, not silence."""
    cfg = config_of(settings.env)
    if not cfg.wanted:
        return []
    if not installed():
        from ..config import SettingsError

        raise SettingsError("OTEL_* asks for traces but the OpenTelemetry SDK is not "
                            "installed: pip install 'butterfly-common[otel]'")
    from .otel import TracingMiddleware

    return [TracingMiddleware(cfg, service_name)]


__all__ = ["SAMPLERS", "TracingConfig", "activate", "client_span", "config_of", "deactivate",
           "installed", "log_fields", "middleware_for", "span", "traceparent"]
