"""BUTTERFLY_READ_AUTH closes every route that needs no role: message payloads and
results (baichuan), run history (ruqi), flow data (xingqiao), publish too.

Each service runs as a real process with ``BUTTERFLY_READ_AUTH=token``; every route of
its /openapi.json without a declared role is asked without credentials (401 with
``x-reason``, before anything is read) and with the read token (served).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from butterfly_common.testing import ButterflyService, RedisServer

READER = "read-policy-reader-token-01"
OPEN_BUILTINS = ("/healthz", "/readyz", "/metrics", "/openapi.json")


@pytest.fixture(scope="module")
def services() -> Iterator[dict[str, ButterflyService]]:
    with RedisServer() as redis:
        env = {"BUTTERFLY_REDIS_URL": redis.url, "BUTTERFLY_WORKERS": "1",
               "BUTTERFLY_READ_AUTH": "token", "BUTTERFLY_READ_TOKEN": READER,
               "RUQI_TIMEZONE": "UTC"}
        started = {name: ButterflyService(name, env) for name in
                   ("baichuan", "ruqi", "xingqiao")}
        try:
            for service in started.values():
                service.start()
            yield started
        finally:
            for service in started.values():
                service.stop()


@pytest.mark.parametrize("name", ["baichuan", "ruqi", "xingqiao"])
def test_reads_need_a_token_when_the_policy_says_so(services, name):
    service = services[name]
    spec = requests.get(f"{service.url}/openapi.json", timeout=30).json()
    reads = sorted(path for path, item in spec["paths"].items()
                   if "security" not in item["get"] and path not in OPEN_BUILTINS)
    assert reads
    for path in reads:
        anonymous = requests.get(f"{service.url}{path}", timeout=30)
        assert anonymous.status_code == 401, path
        assert anonymous.json() == {"stat": "ERR_UNAUTHORIZED"}
        assert "BUTTERFLY_READ_AUTH=token" in anonymous.headers["x-reason"]
        reader = requests.get(f"{service.url}{path}", timeout=30,
                              headers={"Authorization": f"Bearer {READER}"})
        assert reader.status_code not in (401, 403), (path, reader.status_code)
    for path in OPEN_BUILTINS[:1]:
        assert requests.get(f"{service.url}{path}", timeout=30).status_code == 200


def test_the_findings_routes_are_closed(services):
    paths = {"baichuan": ["/baichuan/msgs?topic=/demo_api/hello", "/baichuan/msg?msg_id=x",
                          "/baichuan/wait?msg_id=x&timeout=0.1"],
             "ruqi": ["/ruqi/get_history", "/ruqi/job_history_list"],
             "xingqiao": ["/xingqiao/list_jobs", "/xingqiao/get_job_detail?job_id=1",
                          "/xingqiao/get_tasklist_by_jobid?job_id=1"]}
    for name, urls in paths.items():
        for url in urls:
            r = requests.get(f"{services[name].url}{url}", timeout=30)
            assert r.status_code == 401, url
    published = requests.post(f"{services['baichuan'].url}/baichuan/publish", timeout=30,
                              json={"topic": "/demo_api/hello", "data": {}, "force": True})
    assert published.status_code == 401
