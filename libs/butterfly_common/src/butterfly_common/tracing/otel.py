"""The tracing middleware over the OpenTelemetry SDK (imported only when tracing is on).

Spans, per the semantic conventions (docs/operations.md, "Tracing", lists each with its
attributes):

- an HTTP call: a SERVER span named ``<METHOD> <route>``, continuing the caller's W3C
  ``traceparent``; status, stat and reqid as attributes;
- ``mq.publish``: a PRODUCER span ``send <topic>``, whose context travels in the message
  record (``trace``, written by the publish script, never changed on the way);
- a claimed message: a CONSUMER span ``process <topic>``, parented to and linked with that
  producer context; a retry or a dead letter adds a ``settle <topic>`` span;
- a ``ServiceClient`` call: a CLIENT span, its ``traceparent`` sent along;
- ``req.timming(name)`` points become events of the call's span.

Metrics, beside Prometheus's ``/metrics`` (bounded attributes: routes and topics, never
ids): ``http.server.request.duration``, ``messaging.client.sent.messages``,
``messaging.client.operation.duration`` (send), ``messaging.client.consumed.messages``
and ``messaging.process.duration``, exported by ``OTEL_METRICS_EXPORTER``.

The tracer provider is made on the first span in each process (after gunicorn forked),
made the global one (so handlers use the plain API: ``trace.get_tracer(__name__)``), and
flushed by the ``on_shutdown`` hook.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from opentelemetry import context, metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    MetricExporter,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    ParentBased,
    Sampler,
    TraceIdRatioBased,
)
from opentelemetry.trace import Link, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from ..middleware.base import Middleware
from .config import TracingConfig
from .state import activate

if TYPE_CHECKING:
    from collections.abc import Sequence

    from opentelemetry.sdk.trace import ReadableSpan

    from ..discovery import Route
    from ..mq.message import Message
    from ..protocol import Outcome
    from ..request import Request
    from ..service import Service

try:
    __version__ = version("butterfly-common")
except PackageNotFoundError:  # pragma: no cover - a source tree without metadata
    __version__ = "0"
#: ``messaging.system``: ours is not one of the conventions' well-known values.
MESSAGING_SYSTEM = "butterfly"
_SPAN = "otel.span"
_ATTACHED = "otel.attached"  # req.context: what detaches the call's context
_STARTED = "otel.started"
_PROPAGATOR = TraceContextTextMapPropagator()


class _Discard(SpanExporter):
    """``OTEL_TRACES_EXPORTER=none``: spans are made and dropped (the overhead bench)."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


def _sampler(cfg: TracingConfig) -> Sampler:
    base = cfg.sampler.removeprefix("parentbased_")
    root: Sampler = {"always_on": ALWAYS_ON, "always_off": ALWAYS_OFF}.get(base) \
        or TraceIdRatioBased(cfg.sampler_arg)
    return ParentBased(root) if cfg.sampler.startswith("parentbased_") else root


def _headers(raw: str) -> dict[str, str]:
    pairs = (item.partition("=") for item in raw.split(",") if "=" in item)
    return {k.strip(): v.strip() for k, _, v in pairs}


def _exporter(cfg: TracingConfig) -> SpanExporter:
    kind = cfg.exporter or "otlp"
    if kind == "none":
        return _Discard()
    if kind == "console":
        return ConsoleSpanExporter()
    headers = _headers(cfg.headers) or None
    if cfg.protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter as GrpcExporter,
        )

        endpoint = cfg.traces_endpoint or cfg.endpoint or None
        return GrpcExporter(endpoint=endpoint, headers=headers,
                            insecure=bool(endpoint and endpoint.startswith("http://")))
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    url = cfg.traces_endpoint or (cfg.endpoint.rstrip("/") + "/v1/traces"
                                  if cfg.endpoint else None)
    return OTLPSpanExporter(endpoint=url, headers=headers)


def _metric_reader(cfg: TracingConfig) -> MetricReader | None:
    kind = cfg.metrics_kind
    if kind == "none":
        return None
    exporter: MetricExporter
    if kind == "console":
        exporter = ConsoleMetricExporter()
    elif cfg.protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
            OTLPMetricExporter as GrpcMetricExporter,
        )

        endpoint = cfg.metrics_endpoint or cfg.endpoint or None
        exporter = GrpcMetricExporter(endpoint=endpoint, headers=_headers(cfg.headers) or None,
                                      insecure=bool(endpoint and endpoint.startswith("http://")))
    else:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

        url = cfg.metrics_endpoint or (cfg.endpoint.rstrip("/") + "/v1/metrics"
                                       if cfg.endpoint else None)
        exporter = OTLPMetricExporter(endpoint=url, headers=_headers(cfg.headers) or None)
    return PeriodicExportingMetricReader(exporter,
                                         export_interval_millis=cfg.metric_interval_ms)


class _Instruments:
    """The conventions' instruments, on the process's meter."""

    def __init__(self, meter: metrics.Meter) -> None:
        self.http_duration = meter.create_histogram(
            "http.server.request.duration", unit="s", description="HTTP calls served")
        self.sent = meter.create_counter(
            "messaging.client.sent.messages", unit="{message}",
            description="messages published")
        self.send_duration = meter.create_histogram(
            "messaging.client.operation.duration", unit="s",
            description="time to publish a message")
        self.consumed = meter.create_counter(
            "messaging.client.consumed.messages", unit="{message}",
            description="messages claimed and handed to a handler (each attempt)")
        self.process_duration = meter.create_histogram(
            "messaging.process.duration", unit="s",
            description="time a handler took with a message (each attempt)")


class TracingMiddleware(Middleware):
    """Spans of calls, publishes and messages; the first middleware of the chain, so its
    span covers everything the others do (a refused role check included)."""

    def __init__(self, cfg: TracingConfig, service_name: str) -> None:
        self.cfg = cfg
        self.service_name = cfg.service_name or service_name
        self._lock = threading.Lock()
        self._provider: TracerProvider | None = None
        self._meter_provider: MeterProvider | None = None
        self._tracer: trace.Tracer | None = None
        self._instruments: _Instruments | None = None
        self._publishing = threading.local()
        # tracing.span / client_span of this process come here from now on (an engine-only
        # process never forks; a gunicorn worker builds its own after the fork)
        activate(self)

    # -- the provider, made once per process on first use ----------------------------------
    @property
    def tracer(self) -> trace.Tracer:
        tracer = self._tracer
        if tracer is None:
            with self._lock:
                if self._tracer is None:
                    provider = TracerProvider(
                        resource=Resource.create({"service.name": self.service_name,
                                                  "service.version": __version__}),
                        sampler=_sampler(self.cfg))
                    provider.add_span_processor(BatchSpanProcessor(
                        _exporter(self.cfg), schedule_delay_millis=self.cfg.schedule_delay_ms))
                    trace.set_tracer_provider(provider)
                    self._provider = provider
                    reader = _metric_reader(self.cfg)
                    if reader is not None:  # none: no instrument is even updated
                        meters = MeterProvider(resource=provider.resource,
                                               metric_readers=[reader])
                        self._meter_provider = meters
                        self._instruments = _Instruments(
                            meters.get_meter("butterfly", __version__))
                    self._tracer = provider.get_tracer("butterfly", __version__)
                    activate(self)
                tracer = self._tracer
        return tracer

    @property
    def instruments(self) -> _Instruments | None:
        """The metric instruments, None when metrics are not exported."""
        _ = self.tracer  # made with the tracer
        return self._instruments

    def on_fork(self, service: Service, settings: Any) -> None:
        activate(self)  # client spans and log fields from the first request on
        _ = self.tracer

    def on_shutdown(self, service: Service) -> None:
        if self._provider is not None:
            self._provider.shutdown()  # exports what is still batched
        if self._meter_provider is not None:
            self._meter_provider.shutdown()  # and the metrics' last interval

    # -- HTTP calls -------------------------------------------------------------------------
    def before_call(self, req: Request, route: Route) -> None:
        if req.method == "QUEUE":
            return  # the consumer span of before_process is already current
        # most calls come without one: extracting nothing is not free
        parent = _PROPAGATOR.extract(req.headers) if req.headers.get("traceparent") else None
        span = self.tracer.start_span(
            f"{req.method} {route.path}", context=parent, kind=SpanKind.SERVER,
            attributes={"http.request.method": req.method, "http.route": route.path,
                        "client.address": req.ip, "butterfly.reqid": req.reqid})
        self._enter(req, span, parent)

    def after_call(self, req: Request, route: Route, outcome: Outcome | None) -> None:
        if req.method == "QUEUE":
            return
        span = req.context.get(_SPAN)
        if span is None:
            return
        if outcome is not None:
            span.set_attributes({"http.response.status_code": outcome.status,
                                 "butterfly.stat": str(outcome.stat)})
            if outcome.status >= 500:
                span.set_status(Status(StatusCode.ERROR, req.error_str or None))
            instruments = self.instruments
            if instruments is not None:
                instruments.http_duration.record(
                    time.perf_counter() - req.init_tm,
                    {"http.request.method": req.method, "http.route": route.path,
                     "http.response.status_code": outcome.status})
        self._events(req, span)
        self._leave(req, span)

    # -- publishing -------------------------------------------------------------------------
    def before_publish(self, topic: str, data: dict[str, Any], options: dict[str, Any]) -> None:
        span = self.tracer.start_span(
            f"send {topic}", kind=SpanKind.PRODUCER,
            attributes={"messaging.system": MESSAGING_SYSTEM,
                        "messaging.operation.name": "send",
                        "messaging.operation.type": "send",
                        "messaging.destination.name": topic})
        if options.get("reqid"):
            span.set_attribute("messaging.message.conversation_id", options["reqid"])
        carrier: dict[str, str] = {}
        _PROPAGATOR.inject(carrier, context=trace.set_span_in_context(span))
        if "traceparent" in carrier:
            options["trace"] = carrier["traceparent"]
        self._stack().append((span, time.perf_counter()))

    def after_publish(self, topic: str, data: dict[str, Any], result: Any) -> None:
        stack = self._stack()
        if not stack:
            return
        span, started = stack.pop()
        attributes = {"messaging.system": MESSAGING_SYSTEM, "messaging.operation.name": "send",
                      "messaging.destination.name": topic}
        if result is None:
            span.set_status(Status(StatusCode.ERROR, "publish failed"))
            attributes["error.type"] = "publish_failed"
        else:
            span.set_attribute("messaging.message.id", result.msg_id)
        span.end()
        instruments = self.instruments
        if instruments is not None:
            instruments.sent.add(1, attributes)
            instruments.send_duration.record(time.perf_counter() - started, attributes)

    def _stack(self) -> list[tuple[Any, float]]:
        stack: list[tuple[Any, float]] | None = getattr(self._publishing, "spans", None)
        if stack is None:
            stack = self._publishing.spans = []
        return stack

    # -- messages ----------------------------------------------------------------------------
    def before_process(self, msg: Message, req: Request) -> None:
        created = _PROPAGATOR.extract({"traceparent": msg.trace}) if msg.trace else None
        producer = trace.get_current_span(created).get_span_context() if created else None
        links = [Link(producer)] if producer is not None and producer.is_valid else []
        span = self.tracer.start_span(
            f"process {msg.topic}", context=created, kind=SpanKind.CONSUMER, links=links,
            attributes={"messaging.system": MESSAGING_SYSTEM,
                        "messaging.operation.name": "process",
                        "messaging.operation.type": "process",
                        "messaging.destination.name": msg.topic,
                        "messaging.message.id": msg.id,
                        "messaging.message.conversation_id": req.reqid,
                        "butterfly.attempt": msg.attempts})
        self._enter(req, span, created)
        req.context[_STARTED] = time.perf_counter()
        instruments = self.instruments
        if instruments is not None:
            instruments.consumed.add(1, {"messaging.system": MESSAGING_SYSTEM,
                                         "messaging.operation.name": "process",
                                         "messaging.destination.name": msg.topic})

    def on_timeout(self, msg: Message, req: Request) -> None:
        span = req.context.get(_SPAN)
        if span is not None:
            span.add_event("timeout", {"butterfly.timeout_s": msg.timeout})

    def on_retry(self, msg: Message, req: Request, outcome: Outcome) -> None:
        self._settle(msg, req, "retry")

    def on_dead_letter(self, msg: Message, req: Request, outcome: Outcome) -> None:
        self._settle(msg, req, "dead_letter")

    def _settle(self, msg: Message, req: Request, how: str) -> None:
        span = self.tracer.start_span(
            f"settle {msg.topic}", kind=SpanKind.CONSUMER,
            attributes={"messaging.system": MESSAGING_SYSTEM,
                        "messaging.operation.name": how,
                        "messaging.operation.type": "settle",
                        "messaging.destination.name": msg.topic,
                        "messaging.message.id": msg.id})
        span.end()

    def after_process(self, msg: Message, req: Request, outcome: Outcome) -> None:
        span = req.context.get(_SPAN)
        if span is None:
            return
        span.set_attribute("butterfly.stat", str(outcome.stat))
        if req.error_str and outcome.status >= 500:
            span.set_status(Status(StatusCode.ERROR, req.error_str))
        self._events(req, span)
        self._leave(req, span)
        attributes = {"messaging.system": MESSAGING_SYSTEM, "messaging.operation.name": "process",
                      "messaging.destination.name": msg.topic}
        if outcome.stat != "OK":
            attributes["error.type"] = str(outcome.stat)  # a stat: a bounded set
        started = req.context.pop(_STARTED, None)
        instruments = self.instruments
        if started is not None and instruments is not None:
            instruments.process_duration.record(time.perf_counter() - started, attributes)

    # -- the span of a call -------------------------------------------------------------------
    def _enter(self, req: Request, span: Any, parent: Any) -> None:
        req.context[_SPAN] = span
        req.context[_ATTACHED] = context.attach(trace.set_span_in_context(span, parent))
        ids = span.get_span_context()
        if ids.is_valid:
            req.context["access_fields"] = (f"trace_id:{ids.trace_id:032x}\t"
                                            f"span_id:{ids.span_id:016x}")

    @staticmethod
    def _events(req: Request, span: Any) -> None:
        for name, ms in req.log_talk.items():  # req.timming() points
            span.add_event(name, {"butterfly.ms": round(ms, 3)})

    @staticmethod
    def _leave(req: Request, span: Any) -> None:
        span.end()
        req.context.pop(_SPAN, None)
        token = req.context.pop(_ATTACHED, None)
        if token is not None:
            context.detach(token)

    # -- what httpclient and the logs call (tracing.client_span / log_fields) ---------------
    @contextmanager
    def client_span(self, method: str, url: str, headers: dict[str, str]) -> Iterator[Any]:
        with self.tracer.start_as_current_span(
                f"{method} {url.split('?', 1)[0]}", kind=SpanKind.CLIENT,
                attributes={"http.request.method": method, "url.full": url.split("?", 1)[0]}
        ) as span:
            _PROPAGATOR.inject(headers)
            yield span

    @contextmanager
    def span(self, name: str, attributes: Mapping[str, Any] | None = None,
             parent: str = "") -> Iterator[Any]:
        ctx = _PROPAGATOR.extract({"traceparent": parent}) if parent else None
        with self.tracer.start_as_current_span(name, context=ctx, kind=SpanKind.INTERNAL,
                                               attributes=dict(attributes or {})) as span:
            yield span

    def traceparent(self) -> str:
        carrier: dict[str, str] = {}
        _PROPAGATOR.inject(carrier)
        return carrier.get("traceparent", "")

    def log_fields(self) -> str:
        ids = trace.get_current_span().get_span_context()
        if not ids.is_valid:
            return ""
        return f"trace_id:{ids.trace_id:032x}\tspan_id:{ids.span_id:016x}"
