"""Log files in the original's layout: ``acc.log``, ``err.log``, ``init.log``, ``common.log``.

Lines are tab-separated in the original's field order. Files rotate by size and are never
truncated. ``BUTTERFLY_LOG_DIR=-`` writes everything to stdout for containers. Parameter
values are masked when their name looks secret and escaped so one request is one line.
"""

from __future__ import annotations

import contextvars
import logging
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

from . import nesting, tracing
from .logfiles import (
    BatchingHandler,
    BufferedRotatingFileHandler,
    BufferedStreamHandler,
    SizeRotatingFileHandler,
)
from .reqid import NO_REQID
from .request import Request
from .settings import Settings

access_log = logging.getLogger("butterfly.access")
error_log = logging.getLogger("butterfly.error")
init_log = logging.getLogger("butterfly.init")

#: The reqid of the call being served in this thread/context, for ``common.log`` lines.
current_reqid: contextvars.ContextVar[str] = contextvars.ContextVar("reqid",
                                                                    default=NO_REQID)

#: The strings of the secret parameters of the call being served (``params.Secret``):
#: every log line written while it runs has them masked, whatever the logger.
current_secrets: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar(
    "secrets", default=())
MASK = "***"
#: Strings shorter than this are masked in their parameter only, not searched for in free
#: text (masking "1" everywhere would garble every line and hide nothing).
MIN_SCRUB = 4

LINE_FORMAT = "%(asctime)s\t%(process)d\t%(module)s:%(lineno)d\t%(message)s"
COMMON_FORMAT = ("%(levelname)s %(name)s %(asctime)s: %(module)s:%(lineno)d %(thread)d "
                 "%(reqid)s * %(message)s")
DATEFMT = "%Y-%m-%d %H:%M:%S"
SECRET = re.compile(r"pass|pwd|secret|token|key|auth|credential|cookie|session", re.I)
MAX_VALUE = 256
#: Control characters (C0, DEL, C1), line/paragraph separators, lone surrogates and the
#: backslash itself (so an escaped line can be told from a raw one).
_UNSAFE = re.compile(r"[\\\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
_NAMED = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


class _Date:
    """``DATEFMT`` of one second, formatted once per second: every line of that second
    shares it (the formatter's ``asctime`` and the access lines :func:`write_access`
    buffers itself). One tuple, so a reader never pairs a second with another's text."""

    _cached: tuple[int, str] = (-1, "")

    @classmethod
    def of(cls, second: int) -> str:
        cached = cls._cached
        if cached[0] != second:
            cached = cls._cached = (second, time.strftime(DATEFMT, time.localtime(second)))
        return cached[1]


class _Formatter(logging.Formatter):
    """Formats the date once per second instead of once per line."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        if datefmt != DATEFMT:
            return super().formatTime(record, datefmt)
        return _Date.of(int(record.created))


class _ReqIdFilter(logging.Filter):
    """Every handler's filter: the reqid of the call, and its secrets masked."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.reqid = current_reqid.get()
        if record.levelno >= logging.WARNING and not hasattr(record, "trace_fields"):
            # err.log lines name the active span (tracing on), appended after the message
            fields = tracing.log_fields()
            record.trace_fields = fields  # once per record (several handlers filter it)
            if fields:
                record.msg, record.args = f"{record.getMessage()}\t{fields}", None
        secrets = current_secrets.get()
        if secrets:
            record.msg, record.args = scrub(record.getMessage(), secrets), None
            if record.exc_info and not record.exc_text:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
            if record.exc_text:
                record.exc_text = scrub(record.exc_text, secrets)
        return True


def secret_strings(values: list[Any]) -> tuple[str, ...]:
    """Every string and number inside ``values`` (nested dicts and lists, iteratively and
    bounded) at least :data:`MIN_SCRUB` long, longest first (so a secret containing
    another is masked whole)."""
    found: set[str] = set()
    stack = list(values)
    while stack and len(found) < 1000:
        value = stack.pop()
        if isinstance(value, dict):
            stack.extend(value.values())
        elif isinstance(value, list | tuple):
            stack.extend(value)
        elif isinstance(value, str | int | float) and not isinstance(value, bool):
            text = str(value)
            if len(text) >= MIN_SCRUB:
                found.add(text)
    return tuple(sorted(found, key=len, reverse=True))


def scrub(text: str, secrets: tuple[str, ...]) -> str:
    """``text`` with every occurrence of each secret (and its escaped form) masked."""
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
        escaped = escape(secret)
        if escaped != secret and escaped in text:
            text = text.replace(escaped, MASK)
    return text


def escape(value: Any) -> str:
    """One log field: every control character escaped (so one request is one line), no
    unencodable surrogates, at most MAX_VALUE characters."""
    text = value if isinstance(value, str) else str(value)
    if len(text) > MAX_VALUE:
        text = f"{text[:MAX_VALUE]}...({len(text)} chars)"
    if not (text.isascii() and text.isprintable()) or "\\" in text:
        text = _UNSAFE.sub(_escape_char, text)
    return text


def _escape_char(match: re.Match[str]) -> str:
    ch = match.group()
    named = _NAMED.get(ch)
    if named:
        return named
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def masked(value: Any) -> Any:
    """``value`` with every secret-looking key of nested dicts (and lists) masked.

    Iterative and bounded: containers deeper than the nesting limit become a marker, so
    no message can make the access log recurse (see :mod:`butterfly_common.nesting`).
    """
    if not isinstance(value, dict | list | tuple):
        return value
    return nesting.rebuild(value, nesting.limit(), _mask_leaf)


def _mask_leaf(key: Any, value: Any) -> Any:
    return "***" if isinstance(key, str) and SECRET.search(key) else value


def format_params(params: dict[str, Any]) -> str:
    """``k=v;k=v`` with secret-looking names masked as ``***``, at any depth."""
    return ";".join(f"{escape(k)}={'***' if SECRET.search(k) else escape(masked(v))}"
                    for k, v in params.items())


def access_line(req: Request, stat: Any) -> str:
    """The access log message (after the date, pid and location columns)."""
    talk = ";".join(f"{k}={v:.3f}" for k, v in req.log_talk.items())
    stat = stat if isinstance(stat, str) else str(stat)
    fields = (req.ip, req.reqid, req.method, req.funcname, stat, req.username,
              req.error_str, *req.log_res)
    if not _plain(fields):  # else every field is its own escape: skip nine calls
        fields = tuple(escape(f) for f in fields)
    ip, reqid, method, funcname, stat, username, error_str, *res = fields
    line = "\t".join((
        ip, reqid, method, funcname, f"cost:{req.cost:.6f}", f"stat:{stat}",
        f"user:{username}", f"talk:{talk}", f"params:{format_params(req.log_params)}",
        f"error_msg:{error_str}", f"res:{';'.join(res)}",
    ))
    appended = req.context.get("access_fields")  # e.g. trace_id/span_id: after the columns
    if appended:
        line = f"{line}\t{appended}"
    return scrub(line, req.secrets) if req.secrets else line


def _plain(fields: tuple[Any, ...]) -> bool:
    """True when :func:`escape` would return each of ``fields`` unchanged (all short
    printable ASCII strings without a backslash), checked in one pass over them all."""
    try:
        joined = "".join(fields)
    except TypeError:  # not all strings
        return False
    return (joined.isascii() and joined.isprintable() and "\\" not in joined
            and (len(joined) <= MAX_VALUE or max(map(len, fields)) <= MAX_VALUE))


def write_access(req: Request, stat: Any) -> None:
    """Write one access line.

    To the handler :func:`configure_logging` installed, the line goes straight into its
    batch, formatted as ``LINE_FORMAT`` formats it: a LogRecord, its filter and its
    handler calls were half the cost of the line, a few percent of a request. Any other
    set-up (handlers or filters added, levels changed) goes through logging."""
    handler = _direct_handler()
    if handler is not None:
        handler.add_line(f"{_Date.of(int(time.time()))}\t{os.getpid()}\t{_ACCESS_MODULE}:0\t"
                         f"{access_line(req, stat)}\n")
    elif access_log.isEnabledFor(logging.INFO):
        access_log.handle(access_log.makeRecord(access_log.name, logging.INFO, _ACCESS_FILE, 0,
                                                access_line(req, stat), (), None, "access"))


_ACCESS_FILE = "access.py"
_ACCESS_MODULE = _ACCESS_FILE.removesuffix(".py")  # what %(module)s says of _ACCESS_FILE


def _direct_handler() -> BatchingHandler | None:
    """The access log's one handler when it is still as :func:`configure_logging` set it
    up (LINE_FORMAT, only our filter, INFO, nothing disabled), else None."""
    handlers = access_log.handlers
    if len(handlers) != 1:
        return None
    handler = handlers[0]
    if isinstance(handler, BatchingHandler) and handler.direct_access \
            and len(handler.filters) == 1 and handler.level == logging.NOTSET \
            and not access_log.filters and not access_log.disabled \
            and access_log.level == logging.INFO \
            and logging.root.manager.disable < logging.INFO:
        return handler
    return None


def _handler(settings: Settings, directory: Path | None, filename: str,
             fmt: str, level: int = logging.NOTSET, batched: bool = False) -> logging.Handler:
    """A handler of one log file (or stdout); ``batched`` ones are written every
    ``BUTTERFLY_LOG_FLUSH_MS`` (:mod:`.logfiles`), the others line by line."""
    handler: logging.Handler
    interval = settings.log_flush_ms / 1000
    batched = batched and interval > 0
    if directory is None:
        handler = (BufferedStreamHandler(sys.stdout, interval=interval) if batched
                   else logging.StreamHandler(sys.stdout))
    elif batched:
        handler = BufferedRotatingFileHandler(
            directory / filename, interval=interval, maxBytes=settings.log_max_bytes,
            backupCount=settings.log_backups, encoding="utf-8")
    else:
        handler = SizeRotatingFileHandler(
            directory / filename, maxBytes=settings.log_max_bytes,
            backupCount=settings.log_backups, encoding="utf-8")
    handler.setFormatter(_Formatter(fmt, DATEFMT))
    handler.setLevel(level)
    handler.addFilter(_ReqIdFilter())
    if isinstance(handler, BatchingHandler):
        # write_access may fill its batch directly: LINE_FORMAT, nothing but our filter
        handler.direct_access = fmt == LINE_FORMAT
    return handler


#: The access log's file name in :func:`log_directory` (rotated ones: ``acc.log.1``...).
ACCESS_LOG = "acc.log"


def log_directory(settings: Settings, service: str) -> Path | None:
    """``<log_dir>/<service>/``, where ``service``'s log files are written; None when the
    logs go to stdout (``BUTTERFLY_LOG_DIR=-``). Readers of the files (core's
    ``demo_template``) find them here, so the layout is decided in one place."""
    return None if settings.log_to_stdout else Path(settings.log_dir) / service


def configure_logging(settings: Settings, service: str) -> Path | None:
    """Point the Butterfly loggers at ``<log_dir>/<service>/`` (or stdout); returns the dir."""
    directory = log_directory(settings, service)
    if directory is not None:
        directory.mkdir(parents=True, exist_ok=True)
    for logger, filename in ((access_log, ACCESS_LOG), (error_log, "err.log"),
                             (init_log, "init.log")):
        for old in logger.handlers:
            old.close()  # writes what a batched one still holds
        logger.handlers[:] = [_handler(settings, directory, filename, LINE_FORMAT,
                                       batched=logger is access_log)]
        logger.setLevel(logging.INFO)
        logger.propagate = False
    root = logging.getLogger()
    root.handlers[:] = [
        _handler(settings, directory, "common.log", COMMON_FORMAT),
        _handler(settings, directory, "common.log.wf", COMMON_FORMAT, logging.WARNING),
    ]
    if directory is None:
        root.handlers.pop()  # stdout already has the warnings
    root.setLevel(settings.log_level)
    return directory
