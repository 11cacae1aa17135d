"""The library internals the fast paths (``butterfly_common.fastpath``) rely on, pinned.

Each fast path re-implements or overrides something gunicorn, werkzeug or redis-py does
not promise to keep. These tests fail loudly, naming the fast path and its switch, when an
upgrade changes one: a signature (``inspect``), an attribute, or a behaviour; and they
check that the sample app answers byte for byte the same with the fast paths on and off.
"""

from __future__ import annotations

import importlib.metadata
import inspect
import re
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from gunicorn.config import Config
from gunicorn.http import wsgi
from gunicorn.http.parser import RequestParser
from redis.connection import AbstractConnection, Connection
from redis.exceptions import ConnectionError as RedisConnectionError
from werkzeug.http import HTTP_STATUS_CODES
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Response

from butterfly_common import app as app_module
from butterfly_common import redis_guard
from butterfly_common.app import ServiceApp
from butterfly_common.fastpath import breaker_socket, one_write, response
from butterfly_common.protocol import JSON_TYPE, Outcome
from butterfly_common.serve import ButterflyServer
from butterfly_common.service import Service
from butterfly_common.settings import SettingsError, load_settings

ROOT = Path(__file__).resolve().parents[3]
LOCK = ROOT / "requirements" / "runtime.lock"

#: The versions every fast path was last checked against. An upgrade fails
#: ``test_versions_are_the_ones_checked``: run this file; if the rest passes, bump the pin.
CHECKED = {"gunicorn": "27.0.1", "werkzeug": "3.1.9", "redis": "8.2.0"}
SWITCH = {"gunicorn": "BUTTERFLY_FASTPATH_ONE_WRITE (fastpath/one_write.py)",
          "werkzeug": "BUTTERFLY_FASTPATH_RESPONSE (fastpath/response.py)",
          "redis": "BUTTERFLY_FASTPATH_BREAKER_SOCKET (fastpath/breaker_socket.py)"}


def loud(library: str, what: str) -> str:
    """The failure message: what changed upstream and which switch turns the path off."""
    return (f"{library} {importlib.metadata.version(library)} changed {what}: the fast "
            f"path behind {SWITCH[library]} relies on it. Set that variable to 0 in "
            f"production until the fast path is fixed.")


def locked(package: str) -> str:
    """The version of ``package`` pinned in requirements/runtime.lock."""
    match = re.search(rf"^{re.escape(package)}==([^\s\\]+)", LOCK.read_text(), re.MULTILINE)
    assert match, f"{package} is not pinned in {LOCK}"
    return match.group(1)


@pytest.mark.parametrize("package", sorted(CHECKED))
def test_versions_are_the_ones_checked(package):
    installed = importlib.metadata.version(package)
    assert installed == locked(package), (
        f"{package} {installed} is installed but runtime.lock pins {locked(package)}")
    assert installed == CHECKED[package], (
        f"{package} is now {installed}; the fast path behind {SWITCH[package]} was checked "
        f"against {CHECKED[package]}. Run test_fastpath_contract.py: if it passes, update "
        "CHECKED; if not, fix the fast path or ship with its switch off.")


# -- gunicorn: Response._emit_body and the hooks around it (fastpath/one_write.py) ---------

@pytest.mark.parametrize(("name", "params"), [
    ("_emit_body", ["self", "data"]),
    ("write", ["self", "arg"]),
    ("send_headers", ["self"]),
    ("default_headers", ["self"]),
    ("close", ["self"]),
    ("__init__", ["self", "req", "sock", "cfg"]),
])
def test_gunicorn_response_signatures(name, params):
    method = getattr(wsgi.Response, name, None)
    assert method is not None, loud("gunicorn", f"Response: it has no {name}()")
    assert list(inspect.signature(method).parameters) == params, loud(
        "gunicorn", f"Response.{name}{inspect.signature(method)}, expected ({', '.join(params)})")


class Spy(wsgi.Response):  # type: ignore[misc]
    """gunicorn's Response, recording the hooks it calls (and the bytes of each)."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.calls: list[tuple[str, bytes]] = []

    def send_headers(self) -> None:
        self.calls.append(("send_headers", b""))
        super().send_headers()

    def _emit_body(self, data: bytes) -> None:
        self.calls.append(("_emit_body", data))
        super()._emit_body(data)


def served(monkeypatch: pytest.MonkeyPatch, cls: type, request: bytes,
           app: Callable[[Any], None]) -> tuple[Any, bytes]:
    """gunicorn's parser and ``wsgi.create`` over a socket pair; (response, bytes sent)."""
    monkeypatch.setattr(wsgi, "Response", cls)
    server, client = socket.socketpair()
    with server, client:
        client.sendall(request)
        cfg = Config()
        req = next(iter(RequestParser(cfg, server, ("127.0.0.1", 40000))))
        resp, _environ = wsgi.create(req, server, ("127.0.0.1", 40000), ("127.0.0.1", 8000), cfg)
        app(resp)
        server.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := client.recv(1 << 20):
            received += chunk
    return resp, re.sub(rb"Date: [^\r]*\r\n", b"", received)


GET = b"GET /kinds/echo HTTP/1.1\r\nHost: h\r\n\r\n"


def two_pieces(chunked: bool) -> Callable[[Any], None]:
    def app(resp: Any) -> None:
        headers = [("Content-Type", "application/json")]
        if not chunked:
            headers.append(("Content-Length", "6"))
        resp.start_response("200 OK", headers)
        resp.write(b"[1,")
        resp.write(b"2]")
        resp.close()
    return app


def test_gunicorn_write_sends_the_head_then_hands_each_piece_to_emit_body(monkeypatch):
    resp, _ = served(monkeypatch, Spy, GET, two_pieces(chunked=False))
    assert resp.calls == [("send_headers", b""), ("_emit_body", b"[1,"),
                          ("send_headers", b""), ("_emit_body", b"2]")], loud(
        "gunicorn", "the order of Response.write's send_headers / _emit_body calls")
    for attr in ("sock", "chunked", "headers", "headers_sent"):
        assert hasattr(resp, attr), loud("gunicorn", f"Response: no attribute {attr!r}")


def test_gunicorn_frames_chunks_inside_emit_body(monkeypatch):
    """OneWriteResponse joins the head to the *unframed* bytes only when not chunked."""
    resp, received = served(monkeypatch, Spy, GET, two_pieces(chunked=True))
    assert resp.chunked, loud("gunicorn", "when a body without Content-Length is chunked")
    assert [data for name, data in resp.calls if name == "_emit_body"] == [b"[1,", b"2]"]
    assert received.endswith(b"\r\n\r\n3\r\n[1,\r\n2\r\n2]\r\n0\r\n\r\n"), loud(
        "gunicorn", "where chunked framing happens (no longer inside _emit_body)")


@pytest.mark.parametrize("chunked", [False, True], ids=["length", "chunked"])
def test_one_write_head_is_gunicorns_head(monkeypatch, chunked):
    """OneWriteResponse builds the head itself (send_headers): same bytes as gunicorn's."""
    _, stock = served(monkeypatch, wsgi.Response, GET, two_pieces(chunked))
    _, joined = served(monkeypatch, one_write.OneWriteResponse, GET, two_pieces(chunked))
    assert joined == stock, loud("gunicorn", "the bytes of Response.send_headers' head")


# -- werkzeug: the Response the plain answer re-implements (fastpath/response.py) ---------

def werkzeug_answer(outcome: Outcome, gateway: list[tuple[str, str]],
                    method: str) -> tuple[str, list[tuple[str, str]], bytes]:
    seen: dict[str, Any] = {}
    resp = Response(outcome.body, status=outcome.status, headers=[*outcome.headers, *gateway])
    environ = EnvironBuilder(method=method).get_environ()
    body = b"".join(resp(environ, lambda s, h, e=None: seen.update(s=s, h=list(h))))
    return seen["s"], seen["h"], body


def plain(outcome: Outcome, gateway: list[tuple[str, str]],
          method: str) -> tuple[str, list[tuple[str, str]], bytes]:
    seen: dict[str, Any] = {}
    body = b"".join(response.respond_plain(outcome, list(gateway), method,
                                           lambda s, h, e=None: seen.update(s=s, h=list(h))))
    return seen["s"], seen["h"], body


GATEWAY = [("butterfly", "1.0"), ("x-reqid", "0123456789ABCDEF"), ("x-cost", "0.000100")]
PLAIN_CODES = sorted(c for c in HTTP_STATUS_CODES if 200 <= c < 600 and c not in (204, 304))


@pytest.mark.parametrize("code", [*PLAIN_CODES, 299, 599])
def test_werkzeug_status_lines(code):
    outcome = Outcome(code, "X", b'{"stat": "X"}', [JSON_TYPE])
    assert response.plain_answer(outcome)
    assert plain(outcome, GATEWAY, "GET") == werkzeug_answer(outcome, GATEWAY, "GET"), loud(
        "werkzeug", f"the status line or headers of a {code} Response")


@pytest.mark.parametrize("body", [
    b"", b'{"stat": "OK"}', '{"a": "中文 ünïcödé"}'.encode(), b"x" * (1 << 20),
], ids=["empty", "json", "unicode", "1MiB"])
@pytest.mark.parametrize("method", ["GET", "HEAD", "POST"])
@pytest.mark.parametrize("headers", [[JSON_TYPE], []], ids=["json-type", "no-type"])
def test_werkzeug_headers_length_and_head(body, method, headers):
    """Content-Length appended last, the default type, no body for HEAD."""
    outcome = Outcome(200, "OK", body, headers)
    assert plain(outcome, GATEWAY, method) == werkzeug_answer(outcome, GATEWAY, method), loud(
        "werkzeug", "Content-Length, the default content type or HEAD bodies of a Response")


def test_werkzeug_default_mimetype():
    werkzeugs = ("Content-Type", f"{Response.default_mimetype}; charset=utf-8")
    assert werkzeugs == response.DEFAULT_TYPE, loud("werkzeug", "Response.default_mimetype")


# -- redis-py: Connection._sock (fastpath/breaker_socket.py) ------------------------------

def test_redis_connection_hooks_exist():
    assert isinstance(inspect.getattr_static(AbstractConnection, "is_connected"), property), (
        loud("redis", "Connection.is_connected (no longer a property)"))
    for name, params in (("connect_check_health", ["self", "check_health"]),
                         ("send_packed_command", ["self", "command", "check_health"]),
                         ("read_response", ["self"])):
        got = list(inspect.signature(getattr(Connection, name)).parameters)
        assert got[:len(params)] == params, loud("redis", f"Connection.{name}{got}")


@pytest.fixture
def conn(redis_server) -> Iterator[Any]:
    pool = redis.ConnectionPool.from_url(redis_server.url, socket_timeout=10)
    connection = pool.get_connection()
    yield connection
    connection.disconnect()
    pool.disconnect()


def test_redis_sock_is_the_connected_socket(conn):
    assert isinstance(breaker_socket.sock_of(conn), socket.socket), loud(
        "redis", "Connection._sock (no socket there once connected)")
    assert conn.is_connected
    conn.disconnect()
    assert breaker_socket.sock_of(conn) is None and not conn.is_connected, loud(
        "redis", "Connection._sock after disconnect() (expected None)")


def test_redis_sock_shows_a_waiting_reply(conn):
    assert not breaker_socket.any_readable([conn])
    conn.send_command("PING")
    select.select([breaker_socket.sock_of(conn)], [], [], 5)
    assert breaker_socket.any_readable([conn]), loud(
        "redis", "Connection._sock (a reply waiting there is not visible)")
    assert conn.read_response() in (b"PONG", "PONG")


def test_redis_abort_wakes_a_blocked_read_with_connection_error(conn):
    """The breaker shuts the socket of a read waiting on a silent server: redis-py must
    raise its ConnectionError at once, not wait for its 10 s timeout."""
    conn.send_command("BLPOP", "fastpath:contract:never", 0)
    outcome: list[BaseException] = []

    def read() -> None:
        try:
            conn.read_response()
        except BaseException as exc:  # what redis-py raised is the result
            outcome.append(exc)

    reader = threading.Thread(target=read)
    started = time.monotonic()
    reader.start()
    breaker_socket.abort(conn)
    reader.join(5)
    assert not reader.is_alive() and time.monotonic() - started < 5
    assert len(outcome) == 1 and isinstance(outcome[0], RedisConnectionError), loud(
        "redis", f"what a read raises when its socket is shut down: {outcome!r}")


# -- the switches -------------------------------------------------------------------------

FIELDS = ("fastpath_response", "fastpath_one_write", "fastpath_breaker_socket")


@pytest.mark.parametrize(("env", "on"), [
    ({}, FIELDS),
    ({"BUTTERFLY_FASTPATH": "1"}, FIELDS),
    ({"BUTTERFLY_FASTPATH": "0"}, ()),
    ({"BUTTERFLY_FASTPATH": "0", "BUTTERFLY_FASTPATH_RESPONSE": "1"}, ()),
    ({"BUTTERFLY_FASTPATH_RESPONSE": "0"}, ("fastpath_one_write", "fastpath_breaker_socket")),
    ({"BUTTERFLY_FASTPATH_ONE_WRITE": "off"}, ("fastpath_response", "fastpath_breaker_socket")),
    ({"BUTTERFLY_FASTPATH_BREAKER_SOCKET": "no"}, ("fastpath_response", "fastpath_one_write")),
])
def test_switches(env, on):
    settings = load_settings(env)
    assert {f for f in FIELDS if getattr(settings, f)} == set(on)


@pytest.mark.parametrize("name", ["BUTTERFLY_FASTPATH", "BUTTERFLY_FASTPATH_ONE_WRITE"])
def test_a_bad_switch_names_its_variable(name):
    with pytest.raises(SettingsError, match=name):
        load_settings({name: "sometimes"})


@pytest.mark.parametrize(("value", "installed"), [("1", True), ("0", False)])
def test_one_write_switch_decides_what_a_worker_installs(monkeypatch, value, installed):
    monkeypatch.setattr(wsgi, "Response", wsgi.Response)
    stock = wsgi.Response
    server = ButterflyServer.__new__(ButterflyServer)  # the hook alone, no gunicorn arbiter
    server.service = Service(name="sample", port=18000, handlers="sample_handlers")
    server.settings = load_settings({"BUTTERFLY_FASTPATH_ONE_WRITE": value,
                                     "BUTTERFLY_ANNOUNCE": "off"})
    monkeypatch.setattr("butterfly_common.serve.start_background", lambda *a: [])
    monkeypatch.setattr("butterfly_common.serve.announce_starter", lambda s: lambda st: None)
    monkeypatch.setattr("butterfly_common.serve.gc.freeze", lambda: None)
    server._post_worker_init(None)
    assert (wsgi.Response is one_write.OneWriteResponse) is installed
    assert installed or wsgi.Response is stock


@pytest.mark.parametrize(("watch", "trips"), [(True, 1), (False, 0)])
def test_breaker_socket_switch(watch, trips):
    """Watching: a read silent past stall_after trips the breaker. Not watching: only the
    read's own timeout does (``Breaker.failed``), the watchdog never sees the read."""
    breaker = redis_guard.Breaker(f"fastpath-test-{watch}", 0.05, 1.0, watch)
    waiting = object()  # a connection without a socket: nothing readable, nothing to shut
    breaker.waiting(waiting)
    assert breaker.check_stall(time.monotonic() + 10) is watch
    assert breaker.trips == trips
    breaker.failed(waiting, redis.exceptions.TimeoutError("read timed out"))
    assert breaker.trips == 1
    with pytest.raises(RedisConnectionError, match="not answering"):
        breaker.admit()


def test_guarded_client_follows_the_switch(redis_server):
    from butterfly_common.redis_client import make_redis

    for watch in (True, False):
        client = make_redis(redis_server.url, socket_timeout=0.8, watch_sockets=watch)
        assert client.ping()
        cls = client.connection_pool.connection_class
        assert cls.guard_watch is watch
        assert client.connection_pool.get_connection()._guard().watch is watch


# -- the sample app, fast paths on and off: the same bytes --------------------------------

REQID = "0123456789ABCDEF"
BIG = "大" * 200_000  # 600 kB of UTF-8, under the 1 MiB body limit
REQUESTS: list[tuple[str, str, dict[str, Any]]] = [
    ("GET", "/kinds/echo?a=x&b=2", {}),  # JSON API
    ("GET", "/kinds/echo/?a=x", {}),
    ("POST", "/kinds/echo", {"json": {"a": "body", "opts": {"z": [1]}}}),
    ("POST", "/kinds/echo", {"data": {"a": "form"}}),
    ("GET", "/kinds/echo?a=%E4%B8%AD%F0%9F%A6%8B", {}),  # unicode
    ("POST", "/kinds/echo", {"json": {"a": "中文 ünïcödé 🦋"}}),
    ("POST", "/kinds/echo", {"json": {"a": BIG}}),  # large body
    ("HEAD", "/kinds/echo?a=x", {}),
    ("HEAD", "/nope", {}),
    ("GET", "/kinds/echo", {}),  # 400
    ("GET", "/kinds/echo?a=x&evil%0d%0aSet-Cookie:%20a=b=1", {}),
    ("POST", "/kinds/echo", {"data": "{not json", "content_type": "application/json"}),
    ("GET", "/kinds/boom", {}),  # 500
    ("GET", "/kinds/bad_format", {}),
    ("GET", "/kinds/mapped", {}),  # a handler's own status
    ("GET", "/nope", {}),  # 404 of a path that is no route
    ("GET", "/kinds/Echo", {}),
    ("BREW", "/kinds/echo", {}),  # 405
    ("GET", "/kinds/stat_only", {}),
    ("GET", "/kinds/with_headers", {}),  # handler headers: werkzeug either way
    ("GET", "/kinds/raw_int", {}),  # raw handlers
    ("GET", "/kinds/raw_text", {}),
    ("HEAD", "/kinds/raw_text", {}),
    ("GET", "/kinds/raw_dict?code=202", {}),
    ("GET", "/kinds/raw_bad", {}),
    ("GET", "/healthz", {}),  # built-ins
    ("GET", "/openapi.json", {}),
    ("OPTIONS", "/kinds/stat_only", {}),
]


def wire(app: ServiceApp, method: str, url: str, kwargs: dict[str, Any]
         ) -> tuple[str, list[tuple[str, str]], bytes]:
    """What the WSGI app hands the server: status line, headers in order, body bytes (the
    time spent, ``x-cost``, aside)."""
    environ = EnvironBuilder(path=url, method=method, headers={"X-Reqid": REQID},
                             **kwargs).get_environ()
    seen: dict[str, Any] = {}
    chunks = app(environ, lambda s, h, e=None: seen.update(s=s, h=list(h)))
    try:
        body = b"".join(chunks)
    finally:
        getattr(chunks, "close", lambda: None)()
    headers = [(k, "-" if k == "x-cost" else v) for k, v in seen["h"]]
    return seen["s"], headers, body


@pytest.fixture
def apps(make_app) -> tuple[ServiceApp, ServiceApp]:
    return make_app(), make_app(BUTTERFLY_FASTPATH="0")


@pytest.mark.parametrize(("method", "url", "kwargs"), REQUESTS,
                         ids=[f"{m} {u[:40]}" for m, u, _ in REQUESTS])
def test_same_answer_with_fast_paths_on_and_off(apps, method, url, kwargs):
    fast, public = apps
    on = wire(fast, method, url, kwargs)
    off = wire(public, method, url, kwargs)
    assert on == off, loud("werkzeug", f"the answer to {method} {url}: fast {on[:2]} "
                                       f"vs werkzeug {off[:2]}")
    assert ("x-reqid", REQID) in on[1]


def test_the_switch_decides_who_answers(apps, monkeypatch):
    """The comparison above is not vacuous: on, API answers skip werkzeug; off, they do not."""
    fast, public = apps
    used: list[int] = []
    real = response.respond_plain

    def counting(*args: Any) -> list[bytes]:
        used.append(1)
        return real(*args)

    monkeypatch.setattr(app_module, "respond_plain", counting)
    wire(public, "GET", "/kinds/echo?a=x", {})
    assert used == []
    wire(fast, "GET", "/kinds/echo?a=x", {})
    assert used == [1]
