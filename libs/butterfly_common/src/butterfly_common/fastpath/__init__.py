"""Fast paths that reach into other libraries' internals, all behind one seam.

Each module here replaces one piece of a library's public behaviour with a faster one
that depends on something the library does not promise. Each has its own switch (a
:class:`~butterfly_common.settings.Settings` field read from ``BUTTERFLY_FASTPATH_*``,
default on), and ``BUTTERFLY_FASTPATH=0`` turns them all off: the code then uses only the
libraries' public behaviour, and answers the same bytes. So an upgrade that breaks one
(``libs/butterfly_common/tests/test_fastpath_contract.py`` fails naming it) can be
switched off in production while it is fixed.

- :mod:`.response` (``BUTTERFLY_FASTPATH_RESPONSE``): API answers as plain WSGI instead
  of a werkzeug ``Response``; re-implements werkzeug's status line, header order,
  ``Content-Length`` and default content type. Off: werkzeug's ``Response``.
- :mod:`.one_write` (``BUTTERFLY_FASTPATH_ONE_WRITE``): an answer's head and small body in
  one ``sendall``; subclasses gunicorn's ``Response`` and overrides its private
  ``_emit_body`` (and ``write``, ``send_headers``). Off: gunicorn's own ``Response``.
- :mod:`.breaker_socket` (``BUTTERFLY_FASTPATH_BREAKER_SOCKET``): the Redis breaker's
  watchdog polls and shuts redis-py's private ``Connection._sock`` to fail a silent
  server's reads after half the timeout. Off: reads end at redis-py's own timeout, which
  opens the breaker.

Nothing outside this package touches those internals (docs/architecture.md, "Fast paths").
"""
