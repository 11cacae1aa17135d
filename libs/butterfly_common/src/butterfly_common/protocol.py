"""Turning what a handler returned into an :class:`Outcome`: status, stat, body, headers.

The wire format is the original butterfly's: ``{"stat": ..., **data}`` with ``stat`` first,
Python's default JSON separators, datetimes as ``YYYY-MM-DD HH:MM:SS``. The handler's own
dict and header list are copied, never mutated.
"""

from __future__ import annotations

import datetime as dt
import json
import mimetypes
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from werkzeug.security import safe_join

from . import retstat
from .decorators import HandlerSpec

Headers = list[tuple[str, str]]


@dataclass
class FileBody:
    """A file to stream, already checked to lie inside its root."""

    path: Path
    mimetype: str
    as_attachment: bool


@dataclass
class Stream:
    """A streamed answer an ``@api`` handler may return instead of its envelope: HTTP 200
    with ``content_type``, each bytes item of ``chunks`` sent as it comes (chunked transfer
    encoding) and the iterable closed when the answer ends or the client goes away.

    The handler's checks (access, parameters) run before it returns, so a refusal is still
    an envelope; the chunks are produced after the access log line (whose cost is the time
    to the answer's start) and outside the handler's middleware. Over the queue a stream
    has no meaning: a streaming route is ``topic=False``.
    """

    chunks: Iterable[bytes]
    content_type: str


#: Headers of every streamed answer: no cache, and no buffering by a proxy (nginx honours
#: X-Accel-Buffering), so every chunk reaches the client when it is sent.
STREAM_HEADERS = [("Cache-Control", "no-cache"), ("X-Accel-Buffering", "no")]


@dataclass
class Outcome:
    """The result of one call, independent of HTTP or queue transport."""

    status: int
    stat: Any
    body: bytes = b""
    headers: Headers = field(default_factory=list)
    reason: str = ""
    data: dict[str, Any] | None = None  # the JSON body as a dict, kept for queue results
    file: FileBody | None = None
    #: a streamed body (:class:`Stream`): sent chunk by chunk instead of ``body``
    stream: Iterable[bytes] | None = None


def json_default(obj: Any) -> Any:
    """Datetimes the way the original wrote them; anything else is a handler bug."""
    if isinstance(obj, dt.datetime):
        return obj.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(obj, dt.date):
        return obj.strftime("%Y-%m-%d")
    if isinstance(obj, set | frozenset | tuple):
        return list(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def dumps(body: Mapping[str, Any]) -> bytes:
    return json.dumps(body, default=json_default).encode()


JSON_TYPE = ("Content-Type", "application/json")


class ProtocolSettings:
    """The knobs of the wire format (from Settings), resolved once per app."""

    def __init__(self, legacy_status: bool = False,
                 stat_adaptor: Mapping[str, Any] | None = None) -> None:
        self.legacy_status = legacy_status
        self.stat_adaptor = stat_adaptor

    def adapt(self, body: dict[str, Any]) -> dict[str, Any]:
        """Add the STAT_ADAPTOR ``success``/``message``-style keys for amis front ends."""
        adaptor = self.stat_adaptor
        if adaptor and "stat" in body:
            status_map = adaptor["status_map"]
            body[adaptor["status_name"]] = status_map.get(body["stat"], status_map["default"])
            body[adaptor["message_name"]] = body["stat"]
        return body

    def error(self, status: int, stat: str, reason: str) -> Outcome:
        """A framework error (bad params, exception, auth): JSON body, HTTP status by mode."""
        body = self.adapt({"stat": stat})
        code = retstat.HTTP_OK if self.legacy_status and status != 413 else status
        return Outcome(code, stat, dumps(body), [JSON_TYPE], reason, body)

    def not_found(self) -> Outcome:
        if self.legacy_status:  # the original answered 400 with an empty body
            return Outcome(400, 400, b"", [], "API Not Found")
        return self.error(404, retstat.ERR_NOT_FOUND, "API Not Found")


def _headers(value: Any) -> Headers:
    if value is None:
        return []
    items = value.items() if isinstance(value, Mapping) else value
    return [(str(k), str(v)) for k, v in items]


def _split(ret: Any) -> tuple[Any, Any, Any]:
    if isinstance(ret, str | int) and not isinstance(ret, bool):
        return ret, None, None
    if isinstance(ret, tuple | list) and len(ret) in (2, 3):
        return ret[0], ret[1], ret[2] if len(ret) == 3 else None
    raise ValueError("Invalid ret format")


def render_api(ret: Any, spec: HandlerSpec, conf: ProtocolSettings) -> Outcome:
    """``stat`` | ``(stat, data)`` | ``(stat, data, headers)`` -> JSON; a :class:`Stream`
    -> its chunks."""
    if isinstance(ret, Stream):
        return Outcome(retstat.HTTP_OK, retstat.OK, b"",
                       [("Content-Type", ret.content_type), *STREAM_HEADERS], stream=ret.chunks)
    try:
        stat, data, headers = _split(ret)
        if data is not None and not isinstance(data, Mapping):
            raise ValueError("Invalid ret format: data must be a dict")
        body = {"stat": stat}
        body.update((k, v) for k, v in (data or {}).items() if k != "stat")
        payload = dumps(conf.adapt(body))
        extra = _headers(headers)
    except (ValueError, TypeError, RecursionError) as exc:  # too deep: a handler bug
        reason = str(exc) if type(exc) is ValueError else "Dump json exception"
        return conf.error(500, retstat.ERR_SERVER_EXCEPTION, reason)
    status = (spec.statuses.get(stat, retstat.HTTP_OK)
              if isinstance(stat, str) and not conf.legacy_status else retstat.HTTP_OK)
    return Outcome(status, stat, payload, [*extra, JSON_TYPE], "", body)


def render_raw(ret: Any, conf: ProtocolSettings) -> Outcome:
    """``code`` | ``(code, body[, headers])``; a dict body is JSON, text is text/html."""
    try:
        code, body, headers = _split(ret)
        if not isinstance(code, int) or isinstance(code, bool) or not 100 <= code <= 599:
            raise ValueError("Invalid ret format: status must be an HTTP code")
        extra = _headers(headers)
    except ValueError as exc:
        return Outcome(500, 500, b"", [], str(exc))
    has_type = any(k.lower() == "content-type" for k, _ in extra)
    if body is None:
        return Outcome(code, code, b"", extra)
    if isinstance(body, Mapping):
        try:
            data = conf.adapt(dict(body))
            return Outcome(code, code, dumps(data), [*extra, JSON_TYPE], "", data)
        except (TypeError, ValueError, RecursionError):
            return Outcome(500, 500, b"", [], "Dump json exception")
    if isinstance(body, str):
        body = body.encode()
    if not isinstance(body, bytes | bytearray):
        return Outcome(500, 500, b"", [], "Invalid ret format: body must be dict, str or bytes")
    if not has_type:
        extra.append(("Content-Type", "text/html; charset=utf-8"))
    return Outcome(code, code, bytes(body), extra)


def render_download(ret: Any, root: Path, conf: ProtocolSettings) -> Outcome:
    """``(stat, {"filename": relpath, "is_download": bool}[, headers])`` -> a streamed file.

    ``filename`` must stay inside ``root``: absolute paths and ``..`` are refused with 403
    before anything on disk is looked at.
    """
    try:
        stat, data, headers = _split(ret)
        if not isinstance(data, Mapping) or not isinstance(data.get("filename"), str):
            raise ValueError("Invalid ret format: data needs a 'filename'")
        extra = _headers(headers)
    except ValueError as exc:
        return Outcome(500, 500, b"", [], str(exc))
    name = data["filename"]
    if any(ord(c) < 32 or ord(c) == 127 for c in name) or len(name) > 1024:
        return conf.error(400, retstat.ERR_BAD_PARAMS,
                          "filename holds a control character or is too long")
    joined = safe_join(str(root), name)
    if joined is None or not name:
        return conf.error(403, retstat.ERR_FORBIDDEN, "Path escapes the download directory")
    try:
        path = Path(joined).resolve()
        if not path.is_relative_to(root.resolve()):  # a symlink pointing out of the root
            return conf.error(403, retstat.ERR_FORBIDDEN, "Path escapes the download directory")
        found = path.is_file()
    except (OSError, ValueError):  # a name too long for the file system, ...
        found = False
    if not found:
        return conf.error(404, retstat.ERR_NOT_FOUND, "File does not exist")
    is_download = bool(data.get("is_download", True))
    mimetype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    if not is_download:
        mimetype = "text/plain" if mimetype == "application/octet-stream" else mimetype
    return Outcome(200, stat, b"", extra, "", None, FileBody(path, mimetype, is_download))
