"""The Request a handler receives as ``req``, whether the call came over HTTP or the queue."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

#: Stores a queued call's progress: ``(done, total, note) -> stored``.
ProgressSink = Callable[[int, int, str], bool]


class Request:
    """One call of a handler: who asked, with what, and what to write in the access log.

    Field names follow the original butterfly so handlers port over unchanged.
    """

    __slots__ = ("_tm", "context", "cookie_header", "error_detail", "error_str", "funcname",
                 "headers", "identity", "init_tm", "ip", "log_params", "log_res",
                 "log_ret_code", "log_talk", "method", "progress_sink", "reqid", "secrets",
                 "username", "wsgienv")

    def __init__(self, reqid: str, *, ip: str = "0.0.0.0", username: str = "-",
                 method: str = "GET", funcname: str = "",
                 headers: Mapping[str, str] | None = None,
                 wsgienv: Mapping[str, Any] | None = None) -> None:
        self.reqid = reqid
        self.ip = ip
        self.username = username
        self.method = method
        self.funcname = funcname
        # `is None`, not `or`: the truth of werkzeug's EnvironHeaders walks the environ
        self.headers: Mapping[str, str] = headers if headers is not None else {}
        self.wsgienv: Mapping[str, Any] = wsgienv if wsgienv is not None else {}
        # from the environ when there is one: the same value, without werkzeug's lookup
        self.cookie_header = (wsgienv.get("HTTP_COOKIE", "") if wsgienv is not None
                              else self.headers.get("Cookie", ""))
        self.log_params: dict[str, Any] = {}
        self.log_talk: dict[str, float] = {}
        self.log_res: set[str] = set()
        self.log_ret_code: Any = None
        self.error_str = ""
        self.error_detail = ""
        #: the caller's ``auth.Identity`` once resolved (``auth.request_identity``)
        self.identity: Any = None
        #: strings of the call's secret parameters, masked in its log lines
        self.secrets: tuple[str, ...] = ()
        #: where :meth:`progress` goes: set by the queue consumer, None over HTTP
        self.progress_sink: ProgressSink | None = None
        #: per-call scratch space of middleware (key: the middleware's own name)
        self.context: dict[str, Any] = {}
        self.init_tm = self._tm = time.perf_counter()

    def start_timming(self) -> None:
        """Reset the timing checkpoint (the original's name, kept for ported handlers)."""
        self._tm = time.perf_counter()

    def timming(self, name: str) -> None:
        """Add the ms since the last checkpoint to ``talk:`` under ``name`` (repeats add up)."""
        now = time.perf_counter()
        self.log_talk[name] = self.log_talk.get(name, 0.0) + (now - self._tm) * 1000
        self._tm = now

    def progress(self, done: int, total: int, note: str = "") -> bool:
        """Report that ``done`` of ``total`` steps are done, with an optional short ``note``.

        From the queue it goes into the message's record (``progress``, read by
        ``mq.get``, baichuan's ``msg_get`` and canghai's message page): one Redis command
        per call, so report per step, not per item. Values are clamped (``0 <= done <=
        total``; the note to one line of 200 characters). Over HTTP it does nothing.
        Returns whether it was stored; a store error is logged, never raised, so
        reporting cannot fail the work. Raises TypeError when ``done`` or ``total`` is
        not an int (a bug, whoever called).
        """
        from .mq.progress import normalize

        value = normalize(done, total, note)
        if self.progress_sink is None:
            return False
        return self.progress_sink(value["done"], value["total"], value["note"])

    def cookies(self) -> dict[str, str]:
        """Cookies of the request; malformed items are dropped."""
        jar = {}
        for item in self.cookie_header.split(";"):
            parts = item.strip().split("=")
            if len(parts) == 2:
                jar[parts[0]] = parts[1]
        return jar

    @property
    def cost(self) -> float:
        """Seconds since the request started."""
        return time.perf_counter() - self.init_tm

    def __repr__(self) -> str:
        return f"<Request {self.reqid} {self.method} {self.funcname}>"
