"""The client layer (``ServiceClient``) against the sample service served over real HTTP:
the reqid of the request being served travels on, stats become typed exceptions, a
time-out or a dead callee is a transport failure, the token goes as a Bearer credential,
and one client serves many threads over one pooled session."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from werkzeug.serving import make_server

from butterfly_common.httpclient import (
    ERR_CALL_FAILED,
    BadParams,
    CallError,
    CallTimeout,
    Forbidden,
    NotFound,
    ServerException,
    ServiceClient,
    ServiceError,
    TransportError,
    Unauthorized,
    base_url,
    envelope_stat,
    errors_by_stat,
    given,
)
from butterfly_common.testing import free_port

TOKEN = "client-layer-admin-token-0123"
OPERATOR = "client-layer-operator-token-0123"
REQID = "0123456789ABCDEF"


@pytest.fixture
def serve(make_app) -> Iterator[Callable[..., str]]:
    """Serve the sample app (with extra settings) on a real port; its base URL."""
    servers = []

    def start(**env: str) -> str:
        server = make_server("127.0.0.1", 0, make_app(**env), threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_port}"

    yield start
    for server in servers:
        server.shutdown()


def test_the_reqid_of_the_request_being_served_travels_on(serve, callee):
    url = serve()
    relayed = requests.post(f"{url}/relay/forward", json={"url": callee.url, "path": "/b/one"},
                            headers={"x-reqid": REQID}, timeout=10)
    assert relayed.json() == {"stat": "OK", "data": {"answer": {"stat": "OK"}},
                              "reqid": REQID}
    fresh = requests.post(f"{url}/relay/forward", json={"url": callee.url, "path": "/b/two"},
                          timeout=10)
    made = fresh.headers["x-reqid"]  # the reqid the gateway made for this request
    assert made != REQID and fresh.json()["reqid"] == made
    # outside any request nothing is sent
    ServiceClient(callee.url).call("/b/three")
    assert [(c["path"], c["reqid"]) for c in callee.snapshot()] == [
        ("/b/one", REQID), ("/b/two", made), ("/b/three", None)]


def test_stats_become_the_exception_registered_for_them(serve):
    client = ServiceClient(serve(BUTTERFLY_ADMIN_TOKEN=TOKEN,
                                 BUTTERFLY_OPERATOR_TOKEN=OPERATOR))
    cases = [("/kinds/echo", {}, BadParams, 400),              # a parameter is missing
             ("/nope/nothing", {}, NotFound, 404),             # no such route
             ("/secure/wipe", {}, Unauthorized, 401),          # no credential
             ("/refuse/store_down", {}, ServerException, 500),  # the handler raised
             ("/refuse/classed", {}, ServiceError, 409)]       # a stat of its own
    for path, params, cls, status in cases:
        with pytest.raises(CallError) as err:
            client.request(path, params)
        assert type(err.value) is cls and err.value.status == status, path
        assert isinstance(err.value, ServiceError) and err.value.stat != ERR_CALL_FAILED
        assert err.value.stat == (cls.STAT or "ERR_WRONG_STATE")
    with pytest.raises(Forbidden) as err:  # the operator may not do the admin's work
        ServiceClient(client.base_url, token=OPERATOR).call("/secure/drop")
    assert err.value.status == 403
    with pytest.raises(ServiceError) as err:
        client.call("/refuse/classed")
    assert (err.value.reason, err.value.data) == (
        "already running", {"stat": "ERR_WRONG_STATE", "state": "running"})


class WrongState(ServiceError):
    STAT = "ERR_WRONG_STATE"


class SampleClient(ServiceClient):
    """A service's own client: its stats on top of the framework's."""

    errors = errors_by_stat(WrongState)


def test_a_client_adds_its_own_stats(serve):
    client = SampleClient(serve())
    with pytest.raises(WrongState) as err:
        client.call("/refuse/classed")
    assert err.value.status == 409 and err.value.reason == "already running"
    with pytest.raises(BadParams):  # the framework's stats still apply
        client.call("/kinds/echo")
    with pytest.raises(ServiceError) as plain:  # a stat neither table knows
        client.call("/refuse/plain")
    assert type(plain.value) is ServiceError and plain.value.stat == "ERR_BAD_THING"
    with pytest.raises(CallError) as base:  # the table belongs to the subclass alone
        ServiceClient(client.base_url).call("/refuse/classed")
    assert type(base.value) is ServiceError


def test_time_outs_and_dead_callees_are_transport_failures(serve, callee):
    with pytest.raises(CallTimeout) as err:
        ServiceClient(callee.url, timeout=0.3).call("/slow/one?sleep=2")
    assert err.value.stat == ERR_CALL_FAILED and err.value.status == 0
    assert "ReadTimeout" in err.value.reason
    with pytest.raises(CallTimeout):  # the per-call limit wins over the client's
        ServiceClient(callee.url, timeout=30).request("/slow/two?sleep=2", timeout=0.3)
    with pytest.raises(TransportError) as dead:
        ServiceClient(f"http://127.0.0.1:{free_port()}").call("/a/b")
    assert type(dead.value) is TransportError and dead.value.status == 0
    with pytest.raises(TransportError) as odd:  # an answer, but not an envelope
        ServiceClient(serve()).call("/kinds/raw_text")
    assert odd.value.status == 201 and not isinstance(odd.value, ServiceError)


def test_the_token_is_sent_and_accepted(serve, callee):
    url = serve(BUTTERFLY_ADMIN_TOKEN=TOKEN)
    assert ServiceClient(url, token=TOKEN).call("/secure/wipe") == {"stat": "OK",
                                                                    "wiped": True}
    with pytest.raises(Unauthorized):
        ServiceClient(url).call("/secure/wipe")
    ServiceClient(callee.url, token=TOKEN).call("/t/x")
    assert callee.snapshot()[-1]["headers"]["authorization"] == f"Bearer {TOKEN}"


def test_one_client_many_threads_one_pool(serve):
    client = ServiceClient(serve())
    sessions, answers, errors = set(), [], []

    def work(n: int) -> None:
        try:
            for i in range(10):
                answers.append(client.call("/refuse/ok", n=n * 100 + i)["n"])
            sessions.add(id(client.session()))
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == [] and sorted(answers) == sorted(n * 100 + i for n in range(8)
                                                      for i in range(10))
    assert len(sessions) == 1
    client.close()
    assert client.call("/refuse/ok")["n"] == 1  # a closed client opens a new pool


class CookieServer:
    """A real HTTP server that answers an envelope with ``Set-Cookie`` and records the
    ``Cookie`` header of every call."""

    def __init__(self) -> None:
        self.cookies: list[str | None] = []
        seen = self.cookies

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                seen.append(self.headers.get("Cookie"))
                body = b'{"stat": "OK"}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Set-Cookie", "session=user-a; Path=/")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def test_a_shared_client_keeps_no_cookies():
    """One caller's cookie must never ride along with another caller's call."""
    server = CookieServer()
    try:
        client = ServiceClient(server.url)
        for _ in range(3):
            assert client.call("/a/b") == {"stat": "OK"}
        assert server.cookies == [None, None, None]
        assert len(client.session().cookies) == 0
    finally:
        server.server.shutdown()


def test_helpers():
    assert envelope_stat({"stat": "OK"}) == "OK" and envelope_stat({"stat": 3}) == "3"
    assert envelope_stat({"data": 1}) is None and envelope_stat(["stat"]) is None
    assert errors_by_stat(WrongState)["ERR_WRONG_STATE"] is WrongState
    assert errors_by_stat()["ERR_BAD_PARAMS"] is BadParams
    assert given(a=1, b=None, c=0) == {"a": 1, "c": 0}
    assert base_url("no-such-service", "http://127.0.0.1:9/") == "http://127.0.0.1:9"
    with pytest.raises(LookupError):
        base_url("no-such-service")
