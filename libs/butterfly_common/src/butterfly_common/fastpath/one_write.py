"""gunicorn responses whose head and small body leave in one ``sendall``.

Replaces: gunicorn's own ``gunicorn.http.wsgi.Response`` (``BUTTERFLY_FASTPATH_ONE_WRITE``;
off, gunicorn writes as it always does). It overrides gunicorn's private
``Response._emit_body`` and the public-but-undocumented ``write`` / ``send_headers``;
``tests/test_fastpath_contract.py`` pins their signatures and behaviour.

gunicorn writes a response's head and then each body chunk with a ``sendall`` each: for an
API answer (a few hundred bytes of head, a small JSON body) that is two system calls and
two TCP segments where one does, and the client wakes twice to read it. On a 2-core
machine the second write was ~8 % of the workers' CPU per request (docs/performance.md,
"Fifth pass").

:class:`OneWriteResponse` holds the head back until the first body bytes and sends both
together, when the body is not chunked and at most :data:`JOIN_LIMIT` bytes (a larger body
goes after the head, as before, rather than be copied). The bytes on the wire are the
same. Anything that writes the socket otherwise (``sendfile``, chunked bodies, a
response with no body at all) finds the head already sent, exactly as gunicorn would.

:func:`install` puts it in place in a worker process (``butterfly serve`` calls it from
``post_worker_init``); it leaves gunicorn alone when its ``Response`` lacks the hooks
this relies on (``write``, ``send_headers``, ``_emit_body``, ``default_headers``).
"""

from __future__ import annotations

import logging

from gunicorn.http import wsgi

log = logging.getLogger(__name__)

#: Bodies up to this size are joined to the head; above it, copying costs more than the
#: extra write saves.
JOIN_LIMIT = 64 * 1024

_HOOKS = ("write", "send_headers", "_emit_body", "default_headers")


class OneWriteResponse(wsgi.Response):  # type: ignore[misc]  # gunicorn has no types
    """A gunicorn ``Response`` that sends its head with the first body bytes.

    The head is held only inside :meth:`write` and sent before it returns, so whatever
    else gunicorn writes (``sendfile``, chunk ends, a head without body) finds it sent.
    """

    headers_sent: bool  # set by gunicorn's __init__
    _joining = False
    _held: bytes | None = None

    def write(self, arg: bytes) -> None:
        self._joining = True
        try:
            super().write(arg)
        finally:
            self._joining = False
            held, self._held = self._held, None
            if held is not None:  # no body bytes went out (HEAD, 204, an empty chunk)
                self.sock.sendall(held)

    def send_headers(self) -> None:
        """Build the head as gunicorn does; inside :meth:`write`, hold it for the body."""
        if self.headers_sent:
            return
        lines = self.default_headers()
        lines.extend(f"{name}: {value}\r\n" for name, value in self.headers)
        head = f"{''.join(lines)}\r\n".encode("latin-1")
        self.headers_sent = True
        if self._joining:
            self._held = head
        else:
            self.sock.sendall(head)

    def _emit_body(self, data: bytes) -> None:
        held, self._held = self._held, None
        if held is not None:
            if not self.chunked and len(data) <= JOIN_LIMIT:
                self.sock.sendall(held + data)
                return
            self.sock.sendall(held)
        super()._emit_body(data)


def install() -> bool:
    """Make gunicorn build :class:`OneWriteResponse` in this process; False if it cannot."""
    if wsgi.Response is OneWriteResponse:
        return True
    missing = [name for name in _HOOKS if not hasattr(wsgi.Response, name)]
    if missing:
        log.info("gunicorn's Response has no %s: responses keep two writes",
                 ", ".join(missing))
        return False
    wsgi.Response = OneWriteResponse
    return True
