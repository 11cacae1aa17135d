"""gunicorn's responses with the head joined to the body: same bytes, fewer writes.

Each case runs gunicorn's own request parser and ``wsgi.create`` over a real socket pair,
once with gunicorn's ``Response`` and once with :class:`OneWriteResponse`, and compares
what the client end received (the Date header aside) and how many writes it took.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Callable
from pathlib import Path

import pytest
from gunicorn.config import Config
from gunicorn.http import wsgi
from gunicorn.http.parser import RequestParser

from butterfly_common.fastpath import one_write
from butterfly_common.fastpath.one_write import JOIN_LIMIT, OneWriteResponse

PEER = ("127.0.0.1", 40000)
SERVER = ("127.0.0.1", 8000)


class CountingSocket:
    """A real socket that counts the writes gunicorn makes on it."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.writes = 0

    def sendall(self, data: bytes) -> None:
        self.writes += 1
        self.sock.sendall(data)

    def sendfile(self, file, offset=0, count=None):
        self.writes += 1
        return self.sock.sendfile(file, offset, count)

    def __getattr__(self, name: str):
        return getattr(self.sock, name)


def exchange(monkeypatch: pytest.MonkeyPatch, cls: type, request: bytes,
             app: Callable[[wsgi.Response], None]) -> tuple[bytes, int]:
    """Serve ``request`` with ``cls`` as gunicorn's Response: (bytes received, writes)."""
    monkeypatch.setattr(wsgi, "Response", cls)
    server, client = socket.socketpair()
    with server, client:
        client.sendall(request)
        cfg = Config()
        req = next(iter(RequestParser(cfg, server, PEER)))
        counting = CountingSocket(server)
        resp, _environ = wsgi.create(req, counting, PEER, SERVER, cfg)
        assert type(resp) is cls
        app(resp)
        server.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := client.recv(1 << 20):
            received += chunk
    return re.sub(rb"Date: [^\r]*\r\n", b"", received), counting.writes


GET = b"GET /demo_api/ping HTTP/1.1\r\nHost: h\r\n\r\n"
HEAD = b"HEAD /demo_api/ping HTTP/1.1\r\nHost: h\r\n\r\n"


def answer(body: bytes, *chunks: bytes, length: bool = True) -> Callable[[wsgi.Response], None]:
    def app(resp: wsgi.Response) -> None:
        headers = [("Content-Type", "application/json"), ("x-reqid", "0123456789ABCDEF")]
        if length:
            headers.append(("Content-Length", str(len(body) + sum(map(len, chunks)))))
        resp.start_response("200 OK", headers)
        for piece in (body, *chunks):
            resp.write(piece)
        resp.close()

    return app


@pytest.mark.parametrize(("request_bytes", "app", "writes"), [
    (GET, answer(b'{"stat": "OK"}'), 1),
    (HEAD, answer(b'{"stat": "OK"}'), 1),  # the head alone, no body bytes
    (GET, answer(b""), 1),
    (GET, answer(b"[1,", b"2]"), 2),  # the head joins the first piece only
    (GET, answer(b"x" * (JOIN_LIMIT + 1)), 2),  # too big to copy: head, then body
    (GET, answer(b'{"a": 1}', length=False), 3),  # chunked: head, chunk, last chunk
], ids=["small", "head", "empty", "pieces", "big", "chunked"])
def test_same_bytes_fewer_writes(monkeypatch, request_bytes, app, writes):
    stock, stock_writes = exchange(monkeypatch, wsgi.Response, request_bytes, app)
    joined, joined_writes = exchange(monkeypatch, OneWriteResponse, request_bytes, app)
    assert joined == stock
    assert stock.startswith(b"HTTP/1.1 200 OK\r\n")
    assert joined_writes == writes
    assert stock_writes > joined_writes or writes == stock_writes


def test_sendfile_finds_the_head_already_sent(monkeypatch, tmp_path: Path):
    path = tmp_path / "report.csv"
    path.write_bytes(b"a,b\n1,2\n")

    def app(resp: wsgi.Response) -> None:
        resp.start_response("200 OK", [("Content-Type", "text/csv"),
                                       ("Content-Length", str(path.stat().st_size))])
        with path.open("rb") as f:
            resp.write_file(wsgi.FileWrapper(f))
        resp.close()

    stock, _ = exchange(monkeypatch, wsgi.Response, GET, app)
    joined, _ = exchange(monkeypatch, OneWriteResponse, GET, app)
    assert joined == stock
    assert joined.endswith(b"\r\n\r\na,b\n1,2\n")


def test_a_refused_body_still_sends_the_head_first(monkeypatch):
    def app(resp: wsgi.Response) -> None:
        resp.start_response("200 OK", [("Content-Length", "2")])
        with pytest.raises(TypeError):
            resp.write("not bytes")
        resp.write(b"ok")
        resp.close()

    stock, _ = exchange(monkeypatch, wsgi.Response, GET, app)
    joined, _ = exchange(monkeypatch, OneWriteResponse, GET, app)
    assert joined == stock and joined.endswith(b"\r\n\r\nok")


def test_install_is_idempotent_and_checks_its_hooks(monkeypatch):
    monkeypatch.setattr(wsgi, "Response", wsgi.Response)
    assert one_write.install() and wsgi.Response is OneWriteResponse
    assert one_write.install()

    class Older:  # a gunicorn without the body hook
        def write(self, arg): ...
        def send_headers(self): ...
        def default_headers(self): ...

    monkeypatch.setattr(wsgi, "Response", Older)
    assert not one_write.install() and wsgi.Response is Older
