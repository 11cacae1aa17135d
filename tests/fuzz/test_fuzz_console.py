"""Schemathesis against canghai's console routes (Flask pages and forms, described by the
hand-written document in console_openapi.py), signed in as an admin with the session's
CSRF token, so every page and action is reached. A run fails on any 5xx (client input
never explains a server error) and on a 4xx without ``x-reason``.

Bounded like test_fuzz_fleet.py: ``BUTTERFLY_FUZZ_EXAMPLES`` per operation and mode.
"""

from __future__ import annotations

import os
import re
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

sys.path.insert(0, str(Path(__file__).parent))

from console_openapi import document
from fuzzfleet import CANGHAI_ADMIN_PASSWORD

EXAMPLES = int(os.environ.get("BUTTERFLY_FUZZ_EXAMPLES", "8"))


def _sign_in(base: str) -> tuple[dict[str, str], str]:
    s = requests.Session()
    page = s.get(f"{base}/console/login", timeout=10).text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    r = s.post(f"{base}/console/login", data={"username": "admin", "csrf_token": csrf,
                                              "password": CANGHAI_ADMIN_PASSWORD,
                                              "next": "/console/"},
               allow_redirects=False, timeout=10)
    assert r.status_code == 302, r.headers.get("x-reason")
    page = s.get(f"{base}/console/queues", timeout=10).text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    return dict(s.cookies), csrf


def test_fuzz_console_routes(fuzz_fleet) -> None:
    base = fuzz_fleet["canghai"].url
    cookies, csrf = _sign_in(base)
    headers = {"X-CSRF-Token": csrf,
               "Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())}
    schema = schemathesis.openapi.from_dict(document())
    failures: list[str] = []
    calls: list[int] = []

    statuses: Counter[int] = Counter()

    def check(response: Any, label: str, case: Any, mode: str) -> None:
        status = response.status_code
        statuses[status] += 1
        reason = response.headers.get("x-reason", "")
        if status >= 500 or (400 <= status < 500 and status not in (414, 431) and not reason):
            failures.append(f"{label} [{mode}]: {status} x-reason={reason!r}\n  "
                            f"{case.as_curl_command()}")

    def fuzzer(operation: Any, mode: GenerationMode) -> Any:
        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                  phases=[Phase.explicit, Phase.generate],
                  suppress_health_check=list(HealthCheck))
        def fuzz(case: Any) -> None:
            calls.append(1)
            response = case.call(base_url=base, headers=headers, timeout=15,
                                 allow_redirects=False)
            check(response, operation.label, case, mode.value)

        return fuzz

    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                fuzzer(operation, mode)()
            except Unsatisfiable:
                continue
    # the session survived the run: every action above ran signed in
    r = requests.get(f"{base}/console/queues", headers=headers, allow_redirects=False,
                     timeout=10)
    assert r.status_code == 200
    print(f"console: {len(calls)} calls, statuses {dict(sorted(statuses.items()))}")
    assert statuses[200] > len(calls) // 4  # mostly pages, not refusals or redirects
    assert not failures, f"{len(failures)} failures:\n" + "\n".join(failures[:15])
