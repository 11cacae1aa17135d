"""The fast way out for API answers sends what werkzeug's Response would, byte for byte."""

from __future__ import annotations

import pytest
from werkzeug.wrappers import Response

from butterfly_common.fastpath.response import plain_answer, respond_plain
from butterfly_common.protocol import JSON_TYPE, Outcome

GATEWAY = [("butterfly", "1.0"), ("x-reqid", "0123456789ABCDEF"), ("x-cost", "0.000100"),
           ("x-reason", "why")]


def werkzeug_answer(outcome: Outcome, method: str) -> tuple[str, list, bytes]:
    seen = {}
    response = Response(outcome.body, status=outcome.status,
                        headers=[*outcome.headers, *GATEWAY])
    body = b"".join(response({"REQUEST_METHOD": method, "SERVER_NAME": "x", "SERVER_PORT": "1",
                              "wsgi.url_scheme": "http"},
                             lambda status, headers, exc=None: seen.update(s=status, h=headers)))
    return seen["s"], list(seen["h"]), body


def plain(outcome: Outcome, method: str) -> tuple[str, list, bytes]:
    seen = {}
    body = b"".join(respond_plain(outcome, list(GATEWAY), method,
                                  lambda status, headers, exc=None: seen.update(s=status,
                                                                                h=headers)))
    return seen["s"], list(seen["h"]), body


@pytest.mark.parametrize("outcome", [
    Outcome(200, "OK", b'{"stat": "OK"}', [JSON_TYPE]),
    Outcome(400, "ERR_BAD_PARAMS", b'{"stat": "ERR_BAD_PARAMS"}', [JSON_TYPE], "bad"),
    Outcome(503, "ERR_UNAVAILABLE", b'{"stat": "ERR_UNAVAILABLE"}', [JSON_TYPE]),
    Outcome(599, 599, b"{}", [JSON_TYPE]),
    Outcome(400, 400, b"", []),  # legacy 404: empty body, werkzeug's default type
], ids=["200", "400", "503", "599", "legacy-empty"])
@pytest.mark.parametrize("method", ["GET", "POST", "HEAD"])
def test_plain_answer_matches_werkzeug(outcome, method):
    assert plain_answer(outcome)
    assert plain(outcome, method) == werkzeug_answer(outcome, method)


@pytest.mark.parametrize("outcome", [
    Outcome(204, 204, b"", [JSON_TYPE]),
    Outcome(302, 302, b"", [("Location", "/elsewhere")]),
    Outcome(200, 200, b"x", [("X-Handler", "own")]),
], ids=["204", "redirect", "handler-header"])
def test_other_answers_keep_werkzeug(outcome):
    assert not plain_answer(outcome)
