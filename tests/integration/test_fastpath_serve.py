"""`butterfly serve core` under real gunicorn, fast paths on and ``BUTTERFLY_FASTPATH=0``:
the bytes on the wire are the same (docs/architecture.md, "Fast paths")."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator

import pytest
import requests

from butterfly_common.testing import ButterflyService, RedisServer, wait_until

REQID = "0123456789ABCDEF"
LARGE = "长" * 30_000  # 90 kB of UTF-8 in the answer: past one_write's 64 KiB join limit


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, ButterflyService]]:
    with RedisServer() as redis_server:
        base = {"BUTTERFLY_REDIS_URL": redis_server.url, "BUTTERFLY_WORKERS": "1"}
        with (ButterflyService("core", {**base, "BUTTERFLY_FASTPATH": "1"}) as fast,
              ButterflyService("core", {**base, "BUTTERFLY_FASTPATH": "0"}) as public):
            for service in (fast, public):
                wait_until(lambda s=service: requests.get(f"{s.url}/healthz", timeout=2).ok,
                           30, what="core /healthz")
            yield {"on": fast, "off": public}


def exchange(service: ButterflyService, method: str, target: str, body: bytes = b"") -> bytes:
    """One raw HTTP/1.1 request; the raw answer with its Date, x-cost and ping's random
    string blanked (same length)."""
    host, port = service.url.removeprefix("http://").split(":")
    head = (f"{method} {target} HTTP/1.1\r\nHost: h\r\nX-Reqid: {REQID}\r\n"
            f"Connection: close\r\n")
    if body:
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    received = b""
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(head.encode() + b"\r\n" + body)
        while chunk := conn.recv(1 << 20):
            received += chunk
    received = re.sub(rb"(?m)^Date: [^\r]*", b"Date: -", received)
    received = re.sub(rb'"randstr": "[0-9a-f]{16}"', b'"randstr": "' + b"-" * 16 + b'"', received)
    return re.sub(rb"(?m)^x-cost: [^\r]*", b"x-cost: -", received)


@pytest.mark.parametrize(("method", "target", "body"), [
    ("GET", "/demo_api/ping", b""),  # the plain JSON answer (fastpath.response)
    ("HEAD", "/demo_api/ping", b""),
    ("GET", "/demo_api/hello?str_info=meetbill", b""),  # a handler header: werkzeug
    ("GET", "/demo_api/hello?str_info=%E8%9D%B4%E8%9D%B6", b""),  # unicode
    ("POST", "/demo_api/hello", f'{{"str_info": "{LARGE}"}}'.encode()),  # large answer
    ("HEAD", "/demo_api/hello?str_info=x", b""),
    ("GET", "/demo_api/hello", b""),  # 400
    ("GET", "/no/such", b""),  # 404 of a path that is no route
    ("DELETE", "/demo_api/ping", b""),  # every method reaches the handler
    ("GET", "/healthz", b""),
    ("GET", "/openapi.json", b""),
], ids=["ping", "ping-head", "json", "unicode", "large", "head", "400", "404", "delete",
        "healthz", "openapi"])
def test_same_bytes_on_the_wire(servers, method, target, body):
    fast = exchange(servers["on"], method, target, body)
    assert fast == exchange(servers["off"], method, target, body)
    assert fast.startswith(b"HTTP/1.1 ") and f"x-reqid: {REQID}".encode() in fast
