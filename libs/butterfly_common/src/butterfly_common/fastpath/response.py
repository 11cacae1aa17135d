"""API answers sent as plain WSGI, without building a werkzeug ``Response``.

Replaces: ``werkzeug.wrappers.Response(body, status=..., headers=...)(environ,
start_response)`` for the common answer of every API call. werkzeug's Response costs
about as much as the rest of the request (docs/performance.md, "API answers leave through
plain WSGI"); this sends the same status line, the same headers in the same order
(``Content-Length`` last, werkzeug's default ``Content-Type`` when the handler gave none)
and the same body (none for HEAD).

What it relies on in werkzeug (pinned by ``tests/test_fastpath_contract.py``): the status
line is ``"<code> <HTTP_STATUS_CODES[code].upper()>"`` (``UNKNOWN`` for a code it does not
know), a bytes body gets ``Content-Length`` appended after the given headers, the default
content type is ``text/plain; charset=utf-8``, and HEAD keeps the headers but no body.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from werkzeug.http import HTTP_STATUS_CODES

from ..protocol import JSON_TYPE, Outcome


def plain_answer(outcome: Outcome) -> bool:
    """True for the common answer :func:`respond_plain` can send without werkzeug: a body
    with a status that has one, and no handler header werkzeug would rewrite (Location,
    Content-Length) or check for line breaks: just the JSON content type, or nothing."""
    return (outcome.file is None and outcome.stream is None and 200 <= outcome.status < 600
            and outcome.status not in (204, 304)
            and all(h == JSON_TYPE for h in outcome.headers))


def respond_plain(outcome: Outcome, gateway_headers: list[tuple[str, str]], method: str,
                  start_response: Callable[..., Any]) -> list[bytes]:
    """The WSGI answer werkzeug's Response would give for a :func:`plain_answer`, byte for
    byte (same status line, headers and order, Content-Length last), at a fraction of its
    cost: this is every API call's way out."""
    headers = [*outcome.headers, *gateway_headers]
    if not outcome.headers:
        headers.append(DEFAULT_TYPE)
    body = outcome.body
    headers.append(("Content-Length", str(len(body))))
    start_response(STATUS_LINES.get(outcome.status) or status_line(outcome.status), headers)
    return [] if method == "HEAD" else [body]


def status_line(code: int) -> str:
    """werkzeug's status line for ``code``."""
    return f"{code} {HTTP_STATUS_CODES.get(code, 'UNKNOWN').upper()}"


STATUS_LINES = {code: status_line(code) for code in HTTP_STATUS_CODES}
#: werkzeug's default for a body without a Content-Type
DEFAULT_TYPE = ("Content-Type", "text/plain; charset=utf-8")
