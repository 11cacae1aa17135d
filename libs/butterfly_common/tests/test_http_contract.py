"""The handler contract (docs/handlers.md, docs/architecture.md "The request
path"), rule by rule, through werkzeug's test client (real app, real routing).

Every test here runs twice: with the fast paths on (the default) and with
``BUTTERFLY_FASTPATH=0`` (only werkzeug's and the other libraries' public behaviour), so
the contract holds whichever way an answer leaves (docs/architecture.md, "Fast paths")."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from butterfly_common.app import ServiceApp


@pytest.fixture(params=["1", "0"], ids=["fastpath-on", "fastpath-off"])
def make_app(make_app: Callable[..., ServiceApp], request: pytest.FixtureRequest
             ) -> Callable[..., ServiceApp]:
    """The sample app with ``BUTTERFLY_FASTPATH`` set one way, then the other (``client``
    is built through this one too)."""

    def build(**env: str) -> ServiceApp:
        return make_app(**{"BUTTERFLY_FASTPATH": request.param, **env})

    return build


OK_ECHO = {"a": "x", "b": 0, "flag": False, "tags": None, "opts": None, "ratio": 1.0,
           "anything": None}

# (method, url, request kwargs, status, expected body (dict, bytes or None), x-reason part)
CASES = [
    ("GET", "/kinds/echo?a=x", {}, 200, {"stat": "OK", **OK_ECHO}, None),
    ("GET", "/kinds/echo/?a=x", {}, 200, {"stat": "OK", **OK_ECHO}, None),
    ("GET", "/kinds/echo_again?a=x", {}, 200, {"stat": "OK", **OK_ECHO}, None),
    ("GET", "/kinds/echo//?a=x", {}, 404, {"stat": "ERR_NOT_FOUND"}, "API Not Found"),
    ("GET", "/kinds/Echo?a=x", {}, 404, {"stat": "ERR_NOT_FOUND"}, "API Not Found"),
    ("GET", "/kinds/plain?x=1", {}, 404, {"stat": "ERR_NOT_FOUND"}, "API Not Found"),
    ("GET", "/kinds/whoami", {}, 404, {"stat": "ERR_NOT_FOUND"}, "API Not Found"),
    ("GET", "/kinds/imported_helper", {}, 200, {"stat": "OK"}, None),
    ("GET", "/nope", {}, 404, {"stat": "ERR_NOT_FOUND"}, "API Not Found"),
    ("GET", "/kinds/echo", {}, 400, {"stat": "ERR_BAD_PARAMS"}, "missing: a"),
    ("GET", "/kinds/echo?a=", {}, 400, {"stat": "ERR_BAD_PARAMS"}, "missing: a"),
    ("GET", "/kinds/echo?a=x&zz=1&yy=2", {}, 400, {"stat": "ERR_BAD_PARAMS"},
     "unknown: yy,zz"),
    ("GET", "/kinds/echo?b=1", {}, 400, {"stat": "ERR_BAD_PARAMS"}, "missing: a"),
    ("GET", "/kinds/echo?a=x&b=seven", {}, 400, {"stat": "ERR_BAD_PARAMS"}, "invalid: b"),
    ("GET", "/kinds/echo?a=x&flag=maybe", {}, 400, {"stat": "ERR_BAD_PARAMS"},
     "invalid: flag"),
    ("GET", "/kinds/echo?a=x&a=y", {}, 400, {"stat": "ERR_BAD_PARAMS"}, "invalid: a"),
    ("GET", "/kinds/echo?a=x&req=1", {}, 400, {"stat": "ERR_BAD_PARAMS"}, "reserved"),
    ("GET", "/kinds/echo?a=x&b=3&flag=yes&ratio=2.5", {}, 200,
     {"stat": "OK", **OK_ECHO, "b": 3, "flag": True, "ratio": 2.5}, None),
    ("GET", "/kinds/echo?a=x&tags=p&tags=q&tags=", {}, 200,
     {"stat": "OK", **OK_ECHO, "tags": ["p", "q"]}, None),
    ("GET", "/kinds/echo?a=x&tags=solo", {}, 200, {"stat": "OK", **OK_ECHO, "tags": ["solo"]},
     None),
    ("GET", "/kinds/echo?a=x&opts=%7B%22k%22%3A1%7D", {}, 200,
     {"stat": "OK", **OK_ECHO, "opts": {"k": 1}}, None),
    ("GET", "/kinds/echo?a=x&opts=nope", {}, 400, {"stat": "ERR_BAD_PARAMS"}, "invalid: opts"),
    ("POST", "/kinds/echo?a=query&b=1", {"json": {"a": "body", "opts": {"z": [1]}}}, 200,
     {"stat": "OK", **OK_ECHO, "a": "body", "b": 1, "opts": {"z": [1]}}, None),
    ("POST", "/kinds/echo", {"data": '{"a": "no content type"}'}, 200,
     {"stat": "OK", **OK_ECHO, "a": "no content type"}, None),
    ("POST", "/kinds/echo", {"json": {"a": "x", "b": 2.0, "anything": [1, {"k": None}]}}, 200,
     {"stat": "OK", **OK_ECHO, "b": 2, "anything": [1, {"k": None}]}, None),
    ("POST", "/kinds/echo", {"json": {"a": "x", "b": True}}, 400, {"stat": "ERR_BAD_PARAMS"},
     "invalid: b"),
    ("POST", "/kinds/echo", {"data": {"a": "form", "b": "4"}}, 200,
     {"stat": "OK", **OK_ECHO, "a": "form", "b": 4}, None),
    ("POST", "/kinds/echo", {"data": "{not json", "content_type": "application/json"}, 400,
     {"stat": "ERR_BAD_PARAMS"}, "not valid JSON"),
    ("POST", "/kinds/echo", {"json": [1, 2]}, 400, {"stat": "ERR_BAD_PARAMS"}, "JSON body must"),
    ("POST", "/kinds/kwargs", {"json": {"a": "x", "extra": 1}}, 200,
     {"stat": "OK", "a": "x", "rest": {"extra": 1}}, None),
    ("GET", "/kinds/stat_only", {}, 200, {"stat": "ERR_CUSTOM"}, None),
    ("GET", "/kinds/int_stat", {}, 200, {"stat": 7}, None),
    ("GET", "/kinds/when", {}, 200,
     {"stat": "OK", "at": "2026-01-02 03:04:05", "day": "2026-01-02"}, None),
    ("GET", "/kinds/boom", {}, 500, {"stat": "ERR_SERVER_EXCEPTION"}, "API Processing"),
    ("GET", "/kinds/bad_format", {}, 500, {"stat": "ERR_SERVER_EXCEPTION"}, "Invalid ret"),
    ("GET", "/kinds/not_dict", {}, 500, {"stat": "ERR_SERVER_EXCEPTION"}, "data must be"),
    ("GET", "/kinds/unserialisable", {}, 500, {"stat": "ERR_SERVER_EXCEPTION"}, "Dump json"),
    ("GET", "/kinds/mapped", {}, 404, {"stat": "ERR_NOT_THERE"}, None),
    ("GET", "/kinds/mapped?there=1", {}, 200, {"stat": "OK"}, None),
    ("GET", "/kinds/listing?page_index=2&page_size=20", {}, 200,
     {"stat": "OK", "data": {"total": 45, "list": list(range(20, 40))}}, None),
    ("GET", "/kinds/raw_int", {}, 204, b"", None),
    ("GET", "/kinds/raw_text", {}, 201, b"hello\n", None),
    ("GET", "/kinds/raw_dict?code=202", {}, 202, {"stat": "OK"}, None),
    ("GET", "/kinds/raw_dict?code=x", {}, 400, {"stat": "ERR_BAD_PARAMS"}, "invalid: code"),
    ("GET", "/kinds/raw_bad", {}, 500, b"", "Invalid ret format"),
]


@pytest.mark.parametrize(("method", "url", "kwargs", "status", "body", "reason"), CASES,
                         ids=[f"{c[0]} {c[1]}" for c in CASES])
def test_contract(client, method, url, kwargs, status, body, reason):
    response = client.open(url, method=method, **kwargs)
    assert response.status_code == status, response.data
    if isinstance(body, dict):
        assert response.headers["Content-Type"] == "application/json"
        assert json.loads(response.data) == body
        assert next(iter(json.loads(response.data))) == "stat"  # stat first
    else:
        assert response.data == body
    if reason is None:
        assert "x-reason" not in response.headers
    else:
        assert reason in response.headers["x-reason"]


def test_every_response_carries_gateway_headers(client):
    for url in ("/kinds/echo?a=x", "/nope", "/kinds/boom", "/kinds/raw_int", "/healthz"):
        headers = client.get(url).headers
        assert headers["butterfly"]
        assert len(headers["x-reqid"]) == 16 and headers["x-reqid"].upper() == headers["x-reqid"]
        assert float(headers["x-cost"]) >= 0 and len(headers["x-cost"].split(".")[1]) == 6


def test_exact_bytes_and_default_separators(client):
    assert client.get("/kinds/echo?a=x&b=2").data == (
        b'{"stat": "OK", "a": "x", "b": 2, "flag": false, "tags": null, "opts": null, '
        b'"ratio": 1.0, "anything": null}')
    assert client.get("/kinds/echo?a=%E4%B8%AD").data.startswith(b'{"stat": "OK", "a": "\\u4e2d"')


def test_exception_never_reaches_the_client(client):
    response = client.get("/kinds/boom")
    assert b"secret internal detail" not in response.data
    assert "secret" not in response.headers["x-reason"]


def test_handler_dict_and_headers_are_not_mutated(client):
    from sample_handlers.kinds import SHARED

    for _ in range(3):
        assert json.loads(client.get("/kinds/shared").data) == {"stat": "OK", "k": "v"}
    assert SHARED == {"k": "v"}
    response = client.get("/kinds/with_headers")
    assert response.headers["X-Extra"] == "1"
    assert response.headers.getlist("X-Extra") == ["1"]


def test_all_methods_reach_the_handler(client):
    for method in ("GET", "POST", "PUT", "DELETE", "PATCH"):
        assert client.open("/kinds/stat_only", method=method).status_code == 200


def test_page_bounds_are_bad_params(client):
    for query, reason in (("page_size=0", "page_size must be"),
                          ("page_size=1001", "page_size must be"),
                          ("page_index=0", "page_index must be")):
        response = client.get(f"/kinds/listing?{query}")
        assert response.status_code == 400
        assert json.loads(response.data) == {"stat": "ERR_BAD_PARAMS"}
        assert reason in response.headers["x-reason"]


def test_legacy_status_mode(make_app):
    client = make_app(BUTTERFLY_LEGACY_STATUS="1").test_client()
    response = client.get("/kinds/echo")
    assert response.status_code == 200 and response.data == b'{"stat": "ERR_BAD_PARAMS"}'
    response = client.get("/nope")
    assert response.status_code == 400 and response.data == b""
    assert response.headers["x-reason"] == "API Not Found"
    response = client.get("/kinds/boom")
    assert response.status_code == 200
    assert json.loads(response.data) == {"stat": "ERR_SERVER_EXCEPTION"}


def test_stat_adaptor(make_app):
    adaptor = ('{"status_name": "success", "status_map": {"OK": true, "default": false},'
               ' "message_name": "message"}')
    client = make_app(BUTTERFLY_STAT_ADAPTOR=adaptor).test_client()
    assert json.loads(client.get("/kinds/echo").data) == {
        "stat": "ERR_BAD_PARAMS", "success": False, "message": "ERR_BAD_PARAMS"}
    body = json.loads(client.get("/kinds/stat_only").data)
    assert body == {"stat": "ERR_CUSTOM", "success": False, "message": "ERR_CUSTOM"}
    assert json.loads(client.get("/kinds/mapped?there=true").data)["success"] is True


def test_body_size_limit(make_app):
    client = make_app(BUTTERFLY_MAX_BODY_BYTES="100").test_client()
    response = client.post("/kinds/echo", json={"a": "x" * 200})
    assert response.status_code == 413
    assert json.loads(response.data) == {"stat": "ERR_BODY_TOO_LARGE"}
    assert "100 bytes" in response.headers["x-reason"]
    assert client.post("/kinds/echo", json={"a": "x" * 10}).status_code == 200


def test_x_reason_cannot_inject_headers(client):
    response = client.get("/kinds/echo?a=x&evil%0d%0aSet-Cookie:%20a=b=1")
    assert response.status_code == 400
    assert "Set-Cookie" not in response.headers
    assert "\n" not in response.headers["x-reason"]



def test_a_leading_double_slash_reaches_the_route(client):
    """Leading slashes count as one (what Flask's slash merging gave when it routed the
    paths that are no route): ``//kinds/echo`` reaches the handler, ``/kinds//echo`` is a
    404. Part of the wire contract."""
    def get(path: str):
        return client.get("/", query_string="a=x", environ_overrides={"PATH_INFO": path})

    response = get("//kinds/echo")
    assert response.status_code == 200
    assert json.loads(response.data) == {"stat": "OK", **OK_ECHO}
    assert get("/kinds//echo").status_code == 404  # only slashes before the path merge
