"""OpenTelemetry end to end, real parts only: two real services (gunicorn) with the real
SDK and OTLP/HTTP exporter, sending to a receiver in the test that decodes the protobuf.

One HTTP call (with the caller's ``traceparent``) -> a publish -> a consumer -> a call to
another service: every span in the caller's trace, each parented as the semantic
conventions say (the consumer span parented to and linked with the producer span whose
context travelled in the message record), on Redis and through nutcracker; the access
lines carry the trace and span ids."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from butterfly_common.testing import ButterflyService, Nutcracker, RedisServer, wait_until
from butterfly_common.testing.callee import Callee
from butterfly_common.testing.otlp import OtlpReceiver, ReceivedSpan

HERE = Path(__file__).resolve().parent


@contextlib.contextmanager
def store(kind: str) -> Iterator[str]:
    if kind == "redis":
        with RedisServer() as server:
            yield server.url
    else:
        with RedisServer() as s1, RedisServer() as s2, Nutcracker([s1.port, s2.port]) as proxy:
            yield proxy.url


def one(spans: list[ReceivedSpan], **want: str) -> ReceivedSpan:
    found = [s for s in spans if all(getattr(s, k) == v for k, v in want.items())]
    assert len(found) == 1, (want, [(s.service, s.name, s.kind) for s in spans])
    return found[0]


@pytest.mark.parametrize("kind", ["redis", "twemproxy"])
def test_one_trace_from_http_through_the_queue_to_another_service(kind):
    with OtlpReceiver() as receiver, store(kind) as url:
        env = {"BUTTERFLY_REDIS_URL": url, "BUTTERFLY_WORKERS": "1",
               "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url, "OTEL_BSP_SCHEDULE_DELAY": "100",
               "OTEL_METRIC_EXPORT_INTERVAL": "200"}
        core = ButterflyService("core", env)
        with core:
            traced = ButterflyService("traced_app:service", {
                **env, "BUTTERFLY_CONSUME": "1", "BUTTERFLY_CORE_URL": core.url,
                "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])})
            with traced:
                for svc in (core, traced):
                    wait_until(lambda s=svc: requests.get(f"{s.url}/readyz", timeout=2).ok,
                               30, what=f"{svc.service} ready")
                trace_id, caller = secrets.token_hex(16), secrets.token_hex(8)
                answer = requests.get(f"{traced.url}/traced/front",
                                      headers={"traceparent": f"00-{trace_id}-{caller}-01"},
                                      timeout=10)
                assert answer.ok, answer.text
                reqid = answer.headers["x-reqid"]
                msg_id = answer.json()["msg_id"]
                wait_until(lambda: len([s for s in receiver.spans
                                        if s.trace_id == trace_id]) >= 5, 20,
                           what="the five spans of the call exported")
                wait_until(lambda: {"http.server.request.duration",
                                    "messaging.client.sent.messages",
                                    "messaging.client.consumed.messages",
                                    "messaging.process.duration"} <= {
                    p.name for p in receiver.points}, 20, what="the metrics exported")
                acc = core.log_dir / "acc.log"
                ping_line = wait_until(
                    lambda: next((ln for ln in acc.read_text().splitlines()
                                  if "/demo_api/ping" in ln), None) if acc.exists() else None,
                    15, what="core's access line")

        spans = [s for s in receiver.spans if s.trace_id == trace_id]
        front = one(spans, name="GET /traced/front", kind="server")
        send = one(spans, name="send /traced/back", kind="producer")
        process = one(spans, name="process /traced/back", kind="consumer")
        client = one(spans, kind="client", service="traced")
        ping = one(spans, name="POST /demo_api/ping", kind="server")

        assert front.service == "traced" and front.parent_id == caller
        assert front.attributes["http.route"] == "/traced/front"
        assert front.attributes["http.response.status_code"] == 200
        assert front.attributes["butterfly.reqid"] == reqid
        assert "publish" in front.events  # req.timming() points
        assert send.parent_id == front.span_id
        assert send.attributes["messaging.system"] == "butterfly"
        assert send.attributes["messaging.operation.type"] == "send"
        assert send.attributes["messaging.destination.name"] == "/traced/back"
        assert send.attributes["messaging.message.id"] == msg_id
        # the consumer continues the producer's context from the record, and links to it
        assert process.parent_id == send.span_id
        assert process.links == [(trace_id, send.span_id)]
        assert process.attributes["messaging.message.id"] == msg_id
        assert process.attributes["messaging.message.conversation_id"] == reqid
        assert process.attributes["butterfly.stat"] == "OK"
        assert client.parent_id == process.span_id
        assert client.name == f"POST {core.url}/demo_api/ping"
        assert ping.service == "core" and ping.parent_id == client.span_id
        # metrics with the conventions' names and bounded attributes (routes, topics)
        def points(name: str, service: str) -> list:
            return [p for p in receiver.points if p.name == name and p.service == service]

        assert any(p.attributes == {"http.request.method": "GET", "http.route": "/traced/front",
                                    "http.response.status_code": 200} and p.value >= 1
                   for p in points("http.server.request.duration", "traced"))
        topic = {"messaging.system": "butterfly", "messaging.destination.name": "/traced/back"}
        assert any(p.attributes == {**topic, "messaging.operation.name": "send"}
                   and p.value >= 1 for p in points("messaging.client.sent.messages", "traced"))
        assert any(p.attributes == {**topic, "messaging.operation.name": "process"}
                   and p.value >= 1
                   for p in points("messaging.client.consumed.messages", "traced"))
        assert any(p.attributes == {**topic, "messaging.operation.name": "process"}
                   for p in points("messaging.process.duration", "traced"))
        # the access line names the span it belongs to, after the original's columns
        assert ping_line.split("\t")[-2:] == [f"trace_id:{trace_id}",
                                              f"span_id:{ping.span_id}"]


def test_a_wuxing_write_is_a_span_of_its_call_with_the_revision_it_made():
    token = "t" * 32
    with OtlpReceiver() as receiver, RedisServer() as server:
        wuxing = ButterflyService("wuxing", {
            "BUTTERFLY_REDIS_URL": server.url, "BUTTERFLY_WORKERS": "1",
            "BUTTERFLY_ADMIN_TOKEN": token, "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
            "OTEL_BSP_SCHEDULE_DELAY": "100", "OTEL_METRICS_EXPORTER": "none"})
        with wuxing:
            wait_until(lambda: requests.get(f"{wuxing.url}/readyz", timeout=2).ok, 30,
                       what="wuxing ready")

            def call(handler: str, **params) -> dict:
                answer = requests.post(f"{wuxing.url}/wuxing/{handler}", json=params,
                                       headers={"Authorization": f"Bearer {token}"},
                                       timeout=10)
                assert answer.json()["stat"] == "OK", (handler, answer.text)
                return answer.json()

            section = {"namespace": "traced", "section_name": "web", "section_version": "1"}
            call("section_create", **section)
            call("section_item_add", **section, item_name="i|port", item_default=80)
            call("section_enable", **section)
            call("instance_create", **section, instance_name="web1")
            updated = call("instance_update_item", namespace="traced", instance_name="web1",
                           item_name="i|port", item_value=81)
            wait_until(lambda: receiver.named("POST /wuxing/instance_update_item"), 20,
                       what="the update's server span")
            wait_until(lambda: len(receiver.named("wuxing write")) >= 4, 20,
                       what="a span per write")
        (server_span,) = receiver.named("POST /wuxing/instance_update_item")
        (write,) = [s for s in receiver.named("wuxing write")
                    if s.parent_id == server_span.span_id]
    assert write.trace_id == server_span.trace_id and write.service == "wuxing"
    assert write.attributes["butterfly.namespace"] == "traced"
    assert write.attributes["butterfly.revision"] == updated["data"]["revision"]


def test_a_ruqi_fire_is_a_trace_its_http_call_continues():
    token = "t" * 32
    with OtlpReceiver() as receiver, RedisServer() as server, Callee() as callee:
        ruqi = ButterflyService("ruqi", {
            "BUTTERFLY_REDIS_URL": server.url, "BUTTERFLY_WORKERS": "1",
            "BUTTERFLY_ADMIN_TOKEN": token, "RUQI_HTTP_ALLOW": "127.0.0.1",
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url, "OTEL_BSP_SCHEDULE_DELAY": "100",
            "OTEL_METRICS_EXPORTER": "none"})
        with ruqi:
            wait_until(lambda: requests.get(f"{ruqi.url}/readyz", timeout=2).ok, 30,
                       what="ruqi ready")
            added = requests.post(f"{ruqi.url}/ruqi/add_job", json={
                "job_trigger": "interval", "job_id": "traced", "job_name": "traced",
                "rule": "1h", "cmd": f"{callee.url}/hook"},
                headers={"Authorization": f"Bearer {token}"}, timeout=10)
            assert added.json()["stat"] == "OK", added.text
            ran = requests.post(f"{ruqi.url}/ruqi/run_job", json={"job_id": "traced"},
                                headers={"Authorization": f"Bearer {token}"}, timeout=10)
            assert ran.json()["stat"] == "OK", ran.text
            call = wait_until(lambda: next(iter(callee.calls), None), 20, what="the fire's call")
            fire = wait_until(lambda: next(iter(receiver.named("fire traced")), None), 20,
                              what="the fire's span")
    version, trace_id, parent, _ = call["headers"]["traceparent"].split("-")
    assert (version, trace_id, parent) == ("00", fire.trace_id, fire.span_id)
    assert fire.service == "ruqi" and fire.kind == "internal"
    assert fire.attributes["butterfly.job_id"] == "traced"
    assert fire.attributes["butterfly.fire_key"].startswith("ruqi:")
    assert fire.attributes["butterfly.lateness_s"] >= 0
    assert fire.attributes["butterfly.reqid"] == call["headers"]["x-reqid"]


def test_a_flow_of_three_tasks_is_one_trace_across_services():
    """xingqiao's demo flow ``hello`` (three tasks over core's handlers): the flow's span
    is stored with it, so each task, dispatched later by a notice in another request,
    is its child; each task's message is processed in core under it."""
    token = "o" * 32
    with OtlpReceiver() as receiver, RedisServer() as server:
        env = {"BUTTERFLY_REDIS_URL": server.url, "BUTTERFLY_WORKERS": "1",
               "BUTTERFLY_CONSUME": "1", "BUTTERFLY_CONSUME_MAX_IDLE": "0.1",
               "BUTTERFLY_OPERATOR_TOKEN": token,
               "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url, "OTEL_BSP_SCHEDULE_DELAY": "100",
               "OTEL_METRICS_EXPORTER": "none"}
        with ButterflyService("core", env) as core, ButterflyService("xingqiao", env) as xq:
            for svc in (core, xq):
                wait_until(lambda s=svc: requests.get(f"{s.url}/readyz", timeout=2).ok, 30,
                           what=f"{svc.service} ready")
            trace_id = secrets.token_hex(16)
            created = requests.post(
                f"{xq.url}/xingqiao/create_job",
                json={"job_namespace": "traced", "job_type": "hello",
                      "job_extra": {"str_info": "hi"}},
                headers={"Authorization": f"Bearer {token}",
                         "traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"},
                timeout=10).json()
            assert created["stat"] == "OK", created
            job_id = created["data"]["job_id"]

            def status() -> str:
                return requests.get(f"{xq.url}/xingqiao/get_job_detail",
                                    params={"job_id": job_id},
                                    timeout=5).json()["data"]["job_status"]

            wait_until(lambda: status() == "finished", 30, what="the flow finished")
            wait_until(lambda: len([s for s in receiver.spans if s.trace_id == trace_id
                                    and s.name.startswith("process /demo_api/")]) >= 3, 20,
                       what="the three tasks' consumer spans")
        spans = [s for s in receiver.spans if s.trace_id == trace_id]
    create = one(spans, name="POST /xingqiao/create_job", kind="server")
    flow = one(spans, name="flow hello", kind="internal")
    assert flow.parent_id == create.span_id and flow.attributes["butterfly.job_id"] == job_id
    for label, topic in (("task1", "/demo_api/hello"), ("task2", "/demo_api/ping"),
                         ("task3", "/demo_api/collect")):
        task = one(spans, name=f"task {label}")
        assert task.parent_id == flow.span_id, label  # whoever dispatched it, when
        send = one(spans, name=f"send {topic}", kind="producer")
        assert send.parent_id == task.span_id
        process = one(spans, name=f"process {topic}", kind="consumer")
        assert process.service == "core" and process.parent_id == send.span_id
