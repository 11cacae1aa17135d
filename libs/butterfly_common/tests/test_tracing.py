"""OpenTelemetry tracing in one process: off costs nothing (not even an import), bad OTEL_*
values stop start-up naming the variable, and message outcomes become settle spans and
events, exported over real OTLP/HTTP to a receiver that decodes them.

The cross-service trace (HTTP -> queue -> another service) is tests/integration/
test_tracing_e2e.py."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from butterfly_common import middleware, tracing
from butterfly_common.app import create_app
from butterfly_common.config import SettingsError
from butterfly_common.logfiles import flush_all
from butterfly_common.middleware import Chain, chain_for
from butterfly_common.middleware.defaults import default_middleware
from butterfly_common.mq import FAILED, FINISHED
from butterfly_common.settings import load_settings
from butterfly_common.testing import wait_until
from butterfly_common.testing.otlp import OtlpReceiver
from butterfly_common.tracing.otel import TracingMiddleware

from fixtures_app import SAMPLE


def shut_tracing() -> None:
    """Stop the tracing middleware an app activated for the process (its exporter flushes
    what is left: call it while the receiver still listens, or it retries for seconds)."""
    for mw in middleware.active():
        if isinstance(mw, TracingMiddleware):
            mw.on_shutdown(SAMPLE)
    middleware.install(Chain())
    tracing.deactivate()


@pytest.fixture(autouse=True)
def _tracing_left_off():
    """Each test starts with tracing off in this process and leaves it so (an app built
    with an exporter activates its middleware for the whole process)."""
    tracing.deactivate()
    yield
    shut_tracing()


def test_off_adds_no_middleware_and_does_not_load_the_sdk():
    # (redis-py imports the OpenTelemetry metrics SDK for its own hooks when it is
    # installed; the trace SDK, the exporters and their threads are ours to load, and off
    # they are not)
    code = ("import sys\n"
            "from butterfly_common.middleware import chain_for\n"
            "from butterfly_common.settings import load_settings\n"
            "from fixtures_app import SAMPLE\n"
            "chain = chain_for(SAMPLE, load_settings({}))\n"
            "print(len(chain), any(m.startswith(('opentelemetry.sdk.trace',"
            " 'opentelemetry.exporter')) for m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=str(Path(__file__).parent))
    assert out.stdout.split() == [str(len(default_middleware(load_settings({})))), "False"]


def test_an_endpoint_turns_it_on_first_in_the_chain():
    chain = chain_for(SAMPLE, load_settings({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4318"}))
    assert isinstance(chain.middleware[0], TracingMiddleware)
    assert chain.middleware[0].service_name == "sample"
    off = load_settings({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4318",
                         "OTEL_SDK_DISABLED": "true"})
    assert not any(isinstance(m, TracingMiddleware) for m in chain_for(SAMPLE, off))


@pytest.mark.parametrize(("env", "named"), [
    ({"OTEL_TRACES_SAMPLER": "sometimes"}, "OTEL_TRACES_SAMPLER"),
    ({"OTEL_TRACES_SAMPLER_ARG": "2"}, "OTEL_TRACES_SAMPLER_ARG"),
    ({"OTEL_EXPORTER_OTLP_PROTOCOL": "carrier-pigeon"}, "OTEL_EXPORTER_OTLP_PROTOCOL"),
    ({"OTEL_TRACES_EXPORTER": "jaeger"}, "OTEL_TRACES_EXPORTER"),
])
def test_a_bad_value_names_its_variable(env, named):
    with pytest.raises(SettingsError, match=named):
        chain_for(SAMPLE, load_settings(env))


def test_asked_for_but_not_installed_is_refused(monkeypatch):
    monkeypatch.setattr(tracing, "installed", lambda: False)
    with pytest.raises(SettingsError, match=r"butterfly-common\[otel\]"):
        tracing.middleware_for(load_settings({"OTEL_TRACES_EXPORTER": "console"}), "x")


def test_outcomes_become_settle_spans_and_events(sample_consumers, redis_url):
    broker, start, _ = sample_consumers
    with OtlpReceiver() as receiver:
        cfg = tracing.TracingConfig.from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
                                              "OTEL_BSP_SCHEDULE_DELAY": "100"})
        traced = TracingMiddleware(cfg, "sample")
        consumer = start(chain=Chain([traced, *default_middleware()]), threads=2)
        key = uuid.uuid4().hex
        retried = broker.publish("/jobs/flaky", {"key": key, "failures": 1},
                                 max_retries=1).msg_id
        refused = broker.publish("/jobs/add", {"a": 1}).msg_id
        slow = broker.publish("/jobs/slow", {"seconds": 30}, timeout=0.3).msg_id
        for mid in (retried, refused, slow):
            wait_until(lambda m=mid: broker.get(m).status in (FINISHED, FAILED), 15,
                       what=f"{mid} ended")
        # four attempts (flaky twice) and three settles, exported as they end
        wait_until(lambda: consumer.processed == 4, 10, what="every attempt processed")
        wait_until(lambda: len([s for s in receiver.spans if s.attributes.get(
            "messaging.message.id") in (retried, refused, slow)]) >= 7, 20,
            what="seven spans received")
        traced.on_shutdown(SAMPLE)
        tracing.deactivate()
        spans = receiver.spans

    def of(msg_id: str, name: str) -> list:
        return [s for s in spans if s.name == name
                and s.attributes.get("messaging.message.id") == msg_id]

    attempts = of(retried, "process /jobs/flaky")
    assert sorted(s.attributes["butterfly.attempt"] for s in attempts) == [1, 2]
    (retry,) = of(retried, "settle /jobs/flaky")
    assert retry.attributes["messaging.operation.type"] == "settle"
    assert retry.attributes["messaging.operation.name"] == "retry"
    assert retry.parent_id in {s.span_id for s in attempts}
    (dead,) = of(refused, "settle /jobs/add")
    assert dead.attributes["messaging.operation.name"] == "dead_letter"
    (timed_out,) = of(slow, "process /jobs/slow")
    assert "timeout" in timed_out.events and timed_out.status == 2  # ERROR
    assert of(slow, "settle /jobs/slow")[0].attributes["messaging.operation.name"] == \
        "dead_letter"


def test_an_error_log_line_names_its_span(tmp_path, redis_server):
    with OtlpReceiver() as receiver:
        env = {"BUTTERFLY_LOG_DIR": str(tmp_path / "log"),
               "BUTTERFLY_DATA_DIR": str(tmp_path / "data"),
               "BUTTERFLY_REDIS_URL": redis_server.url,
               "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url}
        client = create_app(SAMPLE, load_settings(env)).test_client()
        answer = client.get("/refuse/store_down",
                            headers={"traceparent": f"00-{'ab' * 16}-{'cd' * 8}-01"})
        assert answer.status_code == 500
        flush_all()
        err = (tmp_path / "log" / "sample" / "err.log").read_text()
        acc = (tmp_path / "log" / "sample" / "acc.log").read_text()
        shut_tracing()
    (line,) = [ln for ln in err.splitlines() if answer.headers["x-reqid"] in ln]
    assert f"trace_id:{'ab' * 16}" in line and "span_id:" in line
    (access,) = [ln for ln in acc.splitlines() if answer.headers["x-reqid"] in ln]
    assert access.split("\t")[-2] == f"trace_id:{'ab' * 16}"


def test_off_a_service_span_is_nothing():
    with tracing.span("fire /a/b", {"job": 1}) as span:
        assert span is None and tracing.traceparent() == ""


def test_a_service_span_continues_a_stored_traceparent():
    with OtlpReceiver() as receiver:
        cfg = tracing.TracingConfig.from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url})
        traced = TracingMiddleware(cfg, "svc")
        traced.on_fork(SAMPLE, load_settings({}))  # what a worker does: activates it
        try:
            with tracing.span("flow demo", {"butterfly.job_id": 7}):
                stored = tracing.traceparent()  # kept in a record, continued elsewhere
            with tracing.span("task one", parent=stored):
                pass
            traced.on_shutdown(SAMPLE)
        finally:
            tracing.deactivate()
        flow = receiver.named("flow demo")[0]
        task = receiver.named("task one")[0]
    assert stored.startswith(f"00-{flow.trace_id}-{flow.span_id}-")
    assert flow.kind == "internal" and flow.attributes == {"butterfly.job_id": 7}
    assert (task.trace_id, task.parent_id) == (flow.trace_id, flow.span_id)
