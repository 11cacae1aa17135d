"""The raw transport of HTTP fires: both of its paths (bare http.client for plain URLs,
requests for the rest) and TLS check the address they are connected to before anything is
sent. A fake resolver plays the attack (a name that passes the check, then connects to
127.0.0.1); the target is a real local server that records every call."""

from __future__ import annotations

import json

import pytest

from butterfly_ruqi import http_transport, safety
from butterfly_ruqi.allowlist import AllowList, parse_allow
from butterfly_ruqi.commands import run_command


def _paths(port: int) -> dict[str, tuple[str, bool]]:
    """URL -> (what it stands for, whether it goes by the fast path)."""
    return {f"http://localhost:{port}/plain": ("fast http", True),
            f"http://localhost:{port}/caf\u00e9": ("requests", False),
            f"https://localhost:{port}/tls": ("fast https", True)}


def test_every_path_checks_the_connected_peer(callee, monkeypatch):
    port = int(callee.url.rsplit(":", 1)[1])
    rebinding = AllowList(parse_allow(f"localhost:{port}", {}),
                          resolver=lambda host, p: ["93.184.216.34"])
    monkeypatch.setattr(safety, "current", lambda: safety.Safety(rebinding))
    for url, (kind, fast) in _paths(port).items():
        assert (http_transport._fast_target(url) is not None) is fast, kind
        with pytest.raises(http_transport.ERRORS) as refused:
            http_transport.post(url, {"a": 1}, {}, 5, 100)
        assert "127.0.0.1" in str(refused.value), (kind, refused.value)
        assert "RUQI_HTTP_ALLOW" in str(refused.value), (kind, refused.value)
        out = run_command(url, script_dir=None, timeout=5, reqid="0123456789ABCDEF",
                          job_id="j1", scheduled=1700000000.0)
        assert not out.success and "RUQI_HTTP_ALLOW" in out.output, (kind, out.output)
    assert callee.snapshot() == []


def test_an_allowed_peer_gets_the_post_on_both_paths(callee, monkeypatch):
    port = int(callee.url.rsplit(":", 1)[1])
    allow = AllowList(parse_allow("127.0.0.1", {}))
    monkeypatch.setattr(safety, "current", lambda: safety.Safety(allow))
    for url in list(_paths(port))[:2]:
        answer = http_transport.post(url, {"a": 1}, {"x-reqid": "0123456789ABCDEF"}, 5, 100)
        assert answer.status == 200 and json.loads(answer.raw) == {"stat": "OK"}
    calls = callee.snapshot()
    assert [c["path"] for c in calls] == ["/plain", "/caf%C3%A9"]
    assert all(c["body"] == '{"a": 1}' and c["reqid"] == "0123456789ABCDEF" for c in calls)


@pytest.mark.parametrize("head", [
    b"Content-Type: text/plain; charset=latin-1\r\nContent-Length: 12\r\n\r\n",
    b"Transfer-Encoding: chunked\r\nLocation: /next\r\nX-A: 1\r\nx-a: 2\r\n\r\n",
    b"Content-Type: text/html;\r\n charset=utf-8\r\nConnection:  close \r\n\r\n",
    b"Location:\t/a b\r\nX-Latin: caf\xe9\nContent-Length: 3\n\n",
    b"X-Good: 1\r\nnot a header line\r\nX-Hidden: 2\r\n\r\n",
    b"\r\n",
])
def test_the_light_header_parse_reads_what_http_client_reads(head):
    """The fast path's header parse (no email parser) gives the fields http.client's own
    gives: values, repeats, folded lines, bare LF line ends, a line that ends the headers."""
    import http.client
    import io

    ours = http_transport._parse_headers(io.BytesIO(head + b"body"))
    stock = http.client.parse_headers(io.BytesIO(head + b"body"))
    assert ours.items() == stock.items()
    for name in ("content-type", "content-length", "transfer-encoding", "location",
                 "connection", "x-a", "x-hidden"):
        assert ours.get(name) == stock.get(name)
        assert ours.get_all(name) == stock.get_all(name)


@pytest.mark.parametrize(("answer", "expected"), [
    (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=latin-1\r\n"
     b"Transfer-Encoding: chunked\r\n\r\n4\r\ncaf\xe9\r\n6\r\n, etc.\r\n0\r\n\r\n",
     (200, None, b"caf\xe9, etc.", "latin-1")),
    (b"HTTP/1.1 302 Found\r\nLocation: http://elsewhere/x\r\nContent-Length: 2\r\n\r\nok",
     (302, "http://elsewhere/x", b"ok", "utf-8")),
    (b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{\"a\": 12345678}",
     (200, None, b"{\"a\": 1234", "utf-8")),
    (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n",
     (204, None, b"", "utf-8")),
])
def test_the_fast_path_reads_each_framing_of_an_answer(monkeypatch, answer, expected):
    """Chunked, sized and close-delimited bodies (cut at limit + 1 bytes), a 1xx before the
    answer, a redirect's Location and the charset, from a raw socket server."""
    import socket
    import threading

    allow = AllowList(parse_allow("127.0.0.1", {}))
    monkeypatch.setattr(safety, "current", lambda: safety.Safety(allow))
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            seen = b""
            while b"\r\n\r\n" not in seen or not seen.endswith(b"}"):
                seen += conn.recv(65536)
            conn.sendall(answer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        got = http_transport.post(f"http://127.0.0.1:{port}/x", {"a": 1}, {}, 5, 9)
    finally:
        thread.join(5)
        server.close()
    assert tuple(got) == expected
