"""``Callee``: a real local HTTP server that records every call made to it.

For tests of anything that calls out (ruqi's HTTP jobs, service-to-service calls): it
answers ``{"stat": "OK"}`` with 200, or what the query asks for: ``?status=503``,
``?stat=ERR_X``, ``?sleep=0.5`` (seconds before answering).
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


class Callee:
    """Records ``{path, query, headers, body, reqid, job, ms, at}`` per call.

    ``job`` / ``ms`` are ruqi's ``x-ruqi-job`` / ``x-ruqi-scheduled`` headers (None / 0
    when absent), ``at`` the arrival time (epoch s). ``active`` / ``max_active`` count
    calls in progress.
    """

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.active = 0
        self.max_active = 0
        self._lock = threading.Lock()
        callee = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                callee._answer(self)

            do_GET = do_PUT = do_PATCH = do_DELETE = do_POST

        class Server(ThreadingHTTPServer):
            request_queue_size = 512  # a second's worth of fires may arrive at once

        self.server = Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def _answer(self, handler: BaseHTTPRequestHandler) -> None:
        at = time.time()
        parts = urlsplit(handler.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        body = handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
        with self._lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
            self.calls.append({
                "method": handler.command, "path": parts.path, "query": query,
                "headers": {k.lower(): v for k, v in handler.headers.items()},
                "job": handler.headers.get("x-ruqi-job"),
                "ms": int(handler.headers.get("x-ruqi-scheduled") or 0),
                "reqid": handler.headers.get("x-reqid"), "body": body.decode(), "at": at})
        try:
            time.sleep(float(query.get("sleep", "0")))
            payload = json.dumps({"stat": query.get("stat", "OK")}).encode()
            handler.send_response(int(query.get("status", "200")))
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(payload)))
            handler.end_headers()
            handler.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the caller was killed mid-request (crash tests)
        finally:
            with self._lock:
                self.active -= 1

    def snapshot(self) -> list[dict[str, Any]]:
        """A copy of every call so far."""
        with self._lock:
            return list(self.calls)

    def of(self, job: str) -> list[dict[str, Any]]:
        """The calls carrying ``x-ruqi-job: <job>``."""
        with self._lock:
            return [c for c in self.calls if c["job"] == job]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> Callee:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
