"""The OpenTelemetry variables Butterfly reads, declared like every other setting."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import Config, setting

SAMPLERS = ("always_on", "always_off", "traceidratio", "parentbased_always_on",
            "parentbased_always_off", "parentbased_traceidratio")


@dataclass(frozen=True)
class TracingConfig(Config):
    """The OpenTelemetry variables Butterfly reads (the SDK's own names and meanings)."""

    disabled: bool = setting("OTEL_SDK_DISABLED", False,
                             help="true turns tracing off whatever else is set")
    service_name: str = setting("OTEL_SERVICE_NAME", "",
                                help="the service.name of the spans; unset: the service's "
                                     "name (core, ruqi, ...)")
    exporter: str = setting("OTEL_TRACES_EXPORTER", "", lower=True,
                            choices=("otlp", "console", "none"),
                            help="otlp, console or none (spans made, never sent: the "
                                 "overhead bench); unset: otlp when an endpoint is set, "
                                 "else tracing is off")
    endpoint: str = setting("OTEL_EXPORTER_OTLP_ENDPOINT", "",
                            help="base URL of the OTLP receiver (http://collector:4318 for "
                                 "http/protobuf, :4317 for grpc)")
    traces_endpoint: str = setting("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "",
                                   help="full URL for traces, instead of the endpoint's "
                                        "/v1/traces")
    protocol: str = setting("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf", lower=True,
                            choices=("http/protobuf", "grpc"),
                            help="OTLP over HTTP (protobuf) or gRPC")
    headers: str = setting("OTEL_EXPORTER_OTLP_HEADERS", "", secret=True,
                           help="key=value,... sent with each export (an API key)")
    sampler: str = setting("OTEL_TRACES_SAMPLER", "parentbased_always_on", lower=True,
                           choices=SAMPLERS, help="which traces are recorded")
    sampler_arg: float = setting("OTEL_TRACES_SAMPLER_ARG", 1.0, min=0.0, max=1.0,
                                 help="the ratio of the traceidratio samplers")
    schedule_delay_ms: int = setting("OTEL_BSP_SCHEDULE_DELAY", 5000, whole=True, min=1,
                                     max=600_000,
                                     help="ms between two exports of finished spans")
    metrics_exporter: str = setting("OTEL_METRICS_EXPORTER", "", lower=True,
                                    choices=("otlp", "console", "none"),
                                    help="otlp, console or none; unset: otlp when tracing "
                                         "exports over OTLP, else none (Prometheus's "
                                         "/metrics is always there)")
    metrics_endpoint: str = setting("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "",
                                    help="full URL for metrics, instead of the endpoint's "
                                         "/v1/metrics")
    metric_interval_ms: int = setting("OTEL_METRIC_EXPORT_INTERVAL", 60_000, whole=True,
                                      min=100, max=3_600_000,
                                      help="ms between two exports of the metrics")

    @property
    def metrics_kind(self) -> str:
        """Where the OpenTelemetry metrics go: otlp, console or none."""
        if self.metrics_exporter:
            return self.metrics_exporter
        return "otlp" if self.wanted and self.exporter in ("", "otlp") else "none"

    @property
    def wanted(self) -> bool:
        """An exporter is configured and the SDK is not disabled."""
        if self.disabled:
            return False
        return bool(self.exporter or self.endpoint or self.traces_endpoint)
