"""Issue 12: hostile input must never break the request, log or record path.

Defect 2 (deep JSON answered HTML 500), the lone-surrogate part of defect 9, defect 12
(control characters in the access log) and defect 8 (made-up HTTP methods).
"""

from __future__ import annotations

import json

from butterfly_common.logs import access_log, escape, format_params, masked


def deep(levels: int, leaf: object = 1) -> object:
    value = leaf
    for _ in range(levels):
        value = {"a": value}
    return value


def deep_text(levels: int) -> str:
    return '{"a":' * levels + "1" + "}" * levels


def acc_lines(app) -> list[str]:
    for handler in access_log.handlers:
        handler.flush()
    return (app.log_dir / "acc.log").read_text(encoding="utf-8").split("\n")[:-1]


def test_defect_02_deep_json_body_is_400_with_reason_not_500(make_app):
    app = make_app()
    client = app.test_client()
    for levels in (65, 600, 5000):  # 5000: past the JSON decoder's own recursion limit
        body = '{"a": "x", "anything": ' + deep_text(levels) + "}"
        response = client.post("/kinds/echo", data=body, content_type="application/json")
        assert response.status_code == 400, (levels, response.data[:200])
        assert response.get_json() == {"stat": "ERR_BAD_PARAMS"}
        assert "nested deeper than 64" in response.headers["x-reason"]
    ok = client.post("/kinds/echo", json={"a": "x", "anything": deep(60)})
    assert ok.status_code == 200


def test_defect_02_deep_dict_in_query_is_400(make_app):
    client = make_app().test_client()
    response = client.get("/kinds/echo", query_string={"a": "x", "opts": deep_text(600)})
    assert response.status_code == 400
    assert "nested deeper than 64" in response.headers["x-reason"]


def test_defect_02_nesting_limit_is_a_setting(make_app):
    client = make_app(BUTTERFLY_MAX_JSON_DEPTH="8").test_client()
    assert client.post("/kinds/echo", json={"a": "x", "anything": deep(6)}).status_code == 200
    refused = client.post("/kinds/echo", json={"a": "x", "anything": deep(9)})
    assert refused.status_code == 400 and "deeper than 8" in refused.headers["x-reason"]


def test_defect_02_masking_and_clipping_never_recurse():
    from butterfly_common import nesting

    value = {"x": deep(50_000), "password": "p"}
    shown = masked(value)
    assert shown["password"] == "***"
    assert nesting.depth(shown) <= nesting.limit()
    line = format_params({"data": value["x"], "token": "t"})
    assert "token=***" in line and "\n" not in line
    clipped = nesting.clip(deep(50_000))
    json.dumps(clipped)  # would raise RecursionError unclipped
    assert nesting.depth(clipped) == nesting.limit()
    assert nesting.clip({"a": [1, {"b": 2}]}) == {"a": [1, {"b": 2}]}


def test_defect_09_lone_surrogate_in_json_body_is_400(make_app):
    client = make_app().test_client()
    for body in ('{"a": "\\ud800"}', '{"a": "x", "anything": {"\\udfff": 1}}'):
        response = client.post("/kinds/echo", data=body, content_type="application/json")
        assert response.status_code == 400, body
        assert "not valid Unicode" in response.headers["x-reason"]


def test_defect_12_access_log_escapes_every_control_character(make_app):
    app = make_app()
    client = app.test_client()
    nasty = "".join(chr(c) for c in range(0x20)) + "\x7f\x85\u2028\u2029end"
    client.get("/kinds/echo", query_string={"a": nasty})
    client.post("/kinds/echo", json={"a": "x", "anything": {"k\x00ey": nasty}})
    client.get("/kinds/echo%00%0a%0d%1b%85/x")
    client.get("/kinds/echo", query_string={"b": "1"})  # error_msg path
    lines = acc_lines(app)
    assert len(lines) == 4, lines
    for line in lines:
        fields = line.split("\t")
        assert len(fields) == 14, fields
        assert not any((ch < " " and ch != "\t") or "\x7f" <= ch <= "\x9f"
                       or ch in "\u2028\u2029" for ch in line), repr(line)
    assert "\\x00\\x01" in lines[0] and "\\u2028\\u2029end" in lines[0]
    assert escape("a\\b") == "a\\\\b"  # the escape character itself is escaped


def series(client, name: str = "butterfly_requests_total") -> int:
    text = client.get("/metrics").get_data(as_text=True)
    return sum(1 for line in text.splitlines() if line.startswith(name + "{"))


def test_defect_08_unknown_methods_are_405_before_routing_with_bounded_metrics(make_app):
    client = make_app().test_client()
    for path in ("/kinds/echo", "/healthz", "/no/such/route"):
        response = client.open(path, method="BREW")
        assert response.status_code == 405, path
        assert response.headers["Allow"] == "GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS"
        assert response.get_json() == {"stat": "ERR_METHOD_NOT_ALLOWED"}
        assert "method not allowed" in response.headers["x-reason"]
    before = series(client)
    for i in range(200):
        client.open(f"/kinds/echo?a={i}", method=f"M{i:03d}")
        client.open(f"/random/{i}", method=f"X{i:03d}")
    assert series(client) - before <= 2  # one OTHER series per route label, not 400
    text = client.get("/metrics").get_data(as_text=True)
    assert "M199" not in text and "X007" not in text
    assert 'method="OTHER"' in text


def test_defect_08_legacy_mode_keeps_405(make_app):
    client = make_app(BUTTERFLY_LEGACY_STATUS="1").test_client()
    assert client.open("/kinds/echo", method="PROPFIND").status_code == 405


def test_defect_09_int_parameters_beyond_64_bits_are_400_not_a_driver_overflow(make_app):
    """Fuzzing found 500s where a huge id reached SQLite (OverflowError): the framework
    refuses ``int`` values no database column holds, for every service at once."""
    client = make_app().test_client()
    for huge in (2**63, -(2**63) - 1, 10**30):
        for response in (client.get(f"/kinds/echo?a=x&b={huge}"),
                         client.post("/kinds/echo", json={"a": "x", "b": huge})):
            assert response.status_code == 400, (huge, response.data[:200])
            assert response.get_json() == {"stat": "ERR_BAD_PARAMS"}
            assert "64-bit" in response.headers["x-reason"]
    ok = client.get(f"/kinds/echo?a=x&b={2**63 - 1}")
    assert ok.status_code == 200 and ok.get_json()["b"] == 2**63 - 1
