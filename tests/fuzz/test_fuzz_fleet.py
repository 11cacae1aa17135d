"""Schemathesis against the live ``/openapi.json`` of every service in deploy/fleet.toml.

Each operation of each service is fuzzed with schema-valid and schema-invalid data, once
without credentials and once with the admin token. A run fails on:

- any 5xx (a client's input never explains a server error) - except from a ``@raw``
  handler that chose its status itself (its document says ``default``, and the answer
  carries no framework ``x-reason``);
- a 4xx without ``x-reason`` (every refusal says why);
- a status, content type or body the service's own document does not allow.

Bounded for ``make test``: ``BUTTERFLY_FUZZ_EXAMPLES`` examples per operation and mode
(default 8), derandomized so a failure reproduces, no shrinking. Raise it locally for a
deeper run: ``BUTTERFLY_FUZZ_EXAMPLES=200 .venv/bin/pytest tests/fuzz``.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

sys.path.insert(0, str(Path(__file__).parent))

from fuzzfleet import TOKEN, services

EXAMPLES = int(os.environ.get("BUTTERFLY_FUZZ_EXAMPLES", "8"))
SERVICES = [inst.service for inst in services()]


def header(response: Any, name: str) -> str:
    values = response.headers.get(name.lower()) or []
    return values[0] if values else ""


#: Refusals gunicorn itself sends (request line or header over its limits): documented in
#: every GET operation, but without ``x-reason`` since no Butterfly code sees the request.
SERVER_LIMITS = {414, 431}


def make_checks(handler_chosen: set[tuple[str, str]]) -> list:
    def no_server_error(ctx: Any, response: Any, case: Any) -> None:
        if response.status_code < 500:
            return
        key = (case.operation.method.upper(), case.operation.path)
        chosen = key in handler_chosen and not header(response, "x-reason")
        assert chosen, (f"{response.status_code} from {key}: "
                        f"x-reason={header(response, 'x-reason')!r}")

    def x_reason_on_4xx(ctx: Any, response: Any, case: Any) -> None:
        if (case.operation.method.upper(), case.operation.path) in handler_chosen:
            return  # a @raw handler answers its own statuses (demo_httpapi/teapot: 418)
        if response.status_code in SERVER_LIMITS:
            return  # answered by gunicorn before any app code runs: it cannot say why
        if 400 <= response.status_code < 500:
            assert header(response, "x-reason"), f"{response.status_code} without x-reason"

    return [no_server_error, x_reason_on_4xx, status_code_conformance,
            content_type_conformance, response_schema_conformance]


def raw_operations(document: dict) -> set[tuple[str, str]]:
    """(METHOD, path) of operations whose handler picks its own status (``default``)."""
    return {(method.upper(), path) for path, item in document["paths"].items()
            for method, op in item.items() if "default" in op["responses"]}


@pytest.mark.parametrize("auth", ["anonymous", "admin"])
@pytest.mark.parametrize("service", SERVICES)
def test_fuzz_service_against_its_own_document(fuzz_fleet, service: str, auth: str) -> None:
    svc = fuzz_fleet[service]
    document = requests.get(f"{svc.url}/openapi.json", timeout=10).json()
    checks = make_checks(raw_operations(document))
    schema = schemathesis.openapi.from_url(f"{svc.url}/openapi.json")
    headers = {"Authorization": f"Bearer {TOKEN}"} if auth == "admin" else {}
    failures: list[str] = []
    calls: list[int] = []

    started = time.monotonic()

    def fuzzer(operation: Any, mode: GenerationMode) -> Any:
        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                  phases=[Phase.explicit, Phase.generate],
                  suppress_health_check=list(HealthCheck))
        def fuzz(case: Any) -> None:
            calls.append(1)
            response = case.call(base_url=svc.url, headers=headers, timeout=15)
            try:
                case.validate_response(response, checks=checks, headers=headers)
            except (Exception, BaseExceptionGroup) as exc:  # collect, report together
                failures.append(f"{operation.label} [{mode.value}]: "
                                f"{str(exc).strip()[:600]}\n  {case.as_curl_command()}")

        return fuzz

    for result in schema.get_all_operations():
        operation = result.ok()
        if auth == "admin" and not operation.definition.raw.get("security"):
            continue  # the token changes nothing for an open route: fuzzed anonymously
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                fuzzer(operation, mode)()
            except Unsatisfiable:  # e.g. no way to make a parameterless call invalid
                continue
    print(f"{service}/{auth}: {len(calls)} calls in {time.monotonic() - started:.1f}s")
    assert calls or auth == "admin"  # a service may have no protected route
    assert not failures, f"{len(failures)} failures:\n" + "\n".join(failures[:15])
