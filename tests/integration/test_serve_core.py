"""`butterfly serve core` under real gunicorn: the quick start's first curl, workers, shutdown."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from butterfly_common.testing import ButterflyService, RedisServer, port_open, wait_until


@pytest.fixture(scope="module")
def core():
    with RedisServer() as redis_server:
        service = ButterflyService("core", {"BUTTERFLY_REDIS_URL": redis_server.url,
                                            "BUTTERFLY_WORKERS": "2"})
        with service:
            wait_until(lambda: requests.get(f"{service.url}/healthz", timeout=2).ok, 30,
                       what="core /healthz")
            yield service


def test_hello_over_real_http(core):
    response = requests.get(f"{core.url}/demo_api/hello", params={"str_info": "meetbill"},
                            timeout=5)
    assert response.status_code == 200
    assert response.content == b'{"stat": "OK", "str_info": "meetbill"}'
    assert re.fullmatch(r"[0-9A-F]{16}", response.headers["x-reqid"])
    assert re.fullmatch(r"\d+\.\d{6}", response.headers["x-cost"])
    assert response.headers["butterfly"] == "2.0.0"


def test_errors_over_real_http(core):
    missing = requests.get(f"{core.url}/demo_api/hello", timeout=5)
    assert missing.status_code == 400 and "str_info" in missing.headers["x-reason"]
    unknown = requests.get(f"{core.url}/no/such", timeout=5)
    assert unknown.status_code == 404 and unknown.json() == {"stat": "ERR_NOT_FOUND"}
    escape = requests.get(f"{core.url}/demo_download/download_file",
                          params={"filename": "../../etc/passwd"}, timeout=5)
    assert escape.status_code == 403 and b"root:" not in escape.content
    assert requests.get(f"{core.url}/readyz", timeout=5).json()["redis"] == "ok"


def test_reqids_unique_across_workers_and_logged(core):
    def hit(i: int) -> str:
        return requests.get(f"{core.url}/demo_api/ping", timeout=10).headers["x-reqid"]

    with ThreadPoolExecutor(16) as pool:
        ids = list(pool.map(hit, range(400)))
    assert len(set(ids)) == 400
    log = core.log_dir / "acc.log"
    wait_until(lambda: sum(i in log.read_text() for i in ids[-5:]) == 5, 10,
               what="access log lines")
    pids = {line.split("\t")[1] for line in log.read_text().splitlines()
            if "/demo_api/ping" in line}
    assert len(pids) == 2  # both gunicorn workers served


def test_metrics_sum_over_workers(core):
    text = requests.get(f"{core.url}/metrics", timeout=5).text
    line = next(line for line in text.splitlines()
                if line.startswith("butterfly_requests_total{")
                and 'route="/demo_api/ping"' in line)
    assert float(line.rsplit(" ", 1)[1]) >= 400


def test_graceful_sigterm(tmp_path):
    with RedisServer() as redis_server:
        service = ButterflyService("core", {"BUTTERFLY_REDIS_URL": redis_server.url})
        service.start()
        wait_until(lambda: requests.get(f"{service.url}/healthz", timeout=2).ok, 30)
        service.proc.send_signal(signal.SIGTERM)
        try:
            code = service.proc.wait(30)
        except subprocess.TimeoutExpired:
            service.kill()
            pytest.fail("core still running 30 s after SIGTERM; its output:\n"
                        + service.output_tail())
        assert code == 0, service.output_tail()
        assert not port_open(service.port)


def test_an_answer_arrives_in_one_piece(core):
    """A worker sends an answer's head and body in one write (fastpath/one_write.py): a client
    already blocked in recv() gets the whole answer from its first read, every time."""
    host, port = core.url.removeprefix("http://").split(":")
    request = f"GET /demo_api/ping HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    with socket.create_connection((host, int(port)), timeout=5) as conn:
        for _ in range(50):
            conn.sendall(request)
            first = conn.recv(65536)  # blocks until the first bytes come
            head, _, body = first.partition(b"\r\n\r\n")
            length = int(re.search(rb"(?i)content-length: (\d+)", head).group(1))
            assert head.startswith(b"HTTP/1.1 200 OK") and len(body) == length > 0
