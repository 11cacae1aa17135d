"""The raw HTTP transport of ruqi's HTTP fires: POST a JSON object to an allow-listed URL.

Why not ``httpclient.ServiceClient``: a fire's target is any URL an operator allowed
(``RUQI_HTTP_ALLOW``, allowlist.py), not a Butterfly service, and the check of its name at
parse time is not enough - the name may resolve elsewhere by the time we connect (DNS
rebinding to 127.0.0.1, a metadata address...). So both paths here check the address the
socket is actually connected to (:func:`check_peer`) before a byte of the request is sent,
TLS handshake included, and close it when it is not allowed (:class:`PeerRefused`). Redirects
are never followed (a 3xx is the answer) and at most ``limit + 1`` bytes are read.

Two paths, one check:

- the fast path (:func:`_post_fast`): bare ``http.client`` on a blocking socket with kernel
  time-outs and a request head written in one piece, for plain ASCII URLs without a proxy:
  a fifth of requests' CPU per fire, which at hundreds of fires a second is most of an
  engine's CPU;
- requests (:func:`_post_requests`) for the rest (proxies from the environment, IDNA names,
  odd URLs), its urllib3 connections subclassed to run the same check once connected.
"""

from __future__ import annotations

import functools
import http.client
import io
import json
import re
import socket
import ssl
import struct
import threading
import types
from typing import Any, NamedTuple, cast
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from butterfly_common import Refusal

from . import safety

USER_AGENT = "butterfly-ruqi"
#: What :func:`post` raises when no answer came: connection, time-out, TLS, a refused peer,
#: a broken answer, a body JSON cannot encode.
ERRORS = (OSError, http.client.HTTPException, ValueError, requests.RequestException)


class Answer(NamedTuple):
    """What came back: the HTTP status, a redirect's ``Location``, the first ``limit + 1``
    bytes of the body and the charset to decode them with."""

    status: int
    location: str | None
    raw: bytes
    encoding: str


def post(target: str, payload: dict[str, Any], headers: dict[str, str], timeout: float,
         limit: int) -> Answer:
    """POST ``payload`` as JSON to ``target`` (already allowed by ``RUQI_HTTP_ALLOW``) with
    ``headers`` after :data:`BASE_HEADERS`, ``Connection: close``; one of :data:`ERRORS`
    when no answer came."""
    fast = _fast_target(target)
    if fast is not None:
        data = json.dumps(payload, allow_nan=False).encode()
        return Answer(*_post_fast(*fast, data, headers, timeout, limit))
    parts = urlsplit(target)
    return Answer(*_post_requests(target, payload, parts.scheme, parts.netloc, headers,
                                  timeout, limit))


_local = threading.local()


@functools.lru_cache(maxsize=1024)
def _env_proxies(scheme: str, netloc: str) -> tuple[tuple[str, str], ...]:
    # requests re-reads every environment variable on every call to find proxies; that was
    # a third of a fire's CPU. The environment does not change, so ask once per host.
    return tuple((requests.utils.get_environ_proxies(f"{scheme}://{netloc}/") or {}).items())


def _proxies(scheme: str, netloc: str) -> dict[str, str]:
    return dict(_env_proxies(scheme, netloc))


class PeerRefused(OSError):
    """The connected address is not allowed (a DNS answer changed after the check)."""


def check_peer(host: str, port: int, sock: Any) -> None:
    """The one peer check of both paths: the address ``sock`` is connected to must be one
    ``RUQI_HTTP_ALLOW`` allows for ``host:port``, else the socket is closed before a byte
    is sent (the name passed the check at parse time, but may resolve elsewhere now:
    DNS rebinding to 127.0.0.1 or a private address)."""
    try:
        safety.current().allow.check_peer(host.strip("[]").lower(), port,
                                          sock.getpeername()[0])
    except Refusal as exc:
        sock.close()
        raise PeerRefused(exc.reason) from None


class _CheckedHTTP(HTTPConnection):
    def _new_conn(self) -> Any:
        sock = super()._new_conn()
        check_peer(self.host, self.port, sock)
        return sock


class _CheckedHTTPS(HTTPSConnection):
    def _new_conn(self) -> Any:
        sock = super()._new_conn()
        check_peer(self.host, self.port, sock)
        return sock


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _CheckedHTTP


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _CheckedHTTPS


def _session() -> requests.Session:
    """One Session per executor thread: no per-call Session set-up, no env scanning.

    Its direct connections check the peer address against ``RUQI_HTTP_ALLOW`` once
    connected, so a name cannot pass the check and then resolve to 127.0.0.1."""
    session = getattr(_local, "session", None)
    if session is None:
        session = _local.session = requests.Session()
        session.trust_env = False
        adapter = HTTPAdapter(max_retries=0)
        adapter.poolmanager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}
        session.mount("http://", adapter)
        session.mount("https://", adapter)
    return session


class _FastHTTP(http.client.HTTPConnection):
    """A bare http.client connection on a blocking socket (:func:`_open_blocking`) whose
    peer address is checked once connected."""

    def connect(self) -> None:
        self.sock = _open_blocking(self.host, self.port, cast(float, self.timeout))
        check_peer(self.host, self.port, self.sock)

    def answer_source(self) -> Any:
        """What http.client reads the answer from: the blocking socket via _Received."""
        return _Received(self.sock)


def _open_blocking(host: str, port: int, timeout: float) -> socket.socket:
    """A connected blocking socket on which any one call gives up after ``timeout``.

    In Python's timeout mode a socket polls before every connect, send and receive, and
    each poll lets go of the GIL: with a few fires in flight, every hand-over of the GIL
    is a context switch, and those cost an engine more than the requests do. The kernel's
    SO_SNDTIMEO / SO_RCVTIMEO bound the same calls, connect included (socket(7)), with
    half the system calls per fire. An IP address is not passed to getaddrinfo."""
    seconds, micros = int(timeout), int(timeout % 1 * 1_000_000)
    limit = struct.pack("ll", seconds, micros if seconds or micros else 1)
    error: OSError = OSError(f"{host} resolves to no address")
    for family, kind, proto, _, address in _addresses(host, port):
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, limit)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, limit)
            sock.connect(address)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return sock
        except BlockingIOError:  # EINPROGRESS: the kernel's connect timeout
            sock.close()
            error = TimeoutError(f"connect timed out after {timeout}s")
        except OSError as exc:
            sock.close()
            error = exc
    raise error


def _addresses(host: str, port: int) -> list[tuple[Any, ...]]:
    """getaddrinfo's answer for ``host``, built directly when it is an IP address."""
    for family, address in ((socket.AF_INET, (host, port)),
                            (socket.AF_INET6, (host, port, 0, 0))):
        try:
            socket.inet_pton(family, host)
        except OSError:
            continue
        return [(family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", address)]
    return socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)


class _Received(io.RawIOBase):
    """The answer's bytes for http.client, off a blocking socket with a receive timeout:
    the kernel's EAGAIN is a TimeoutError, as in Python's timeout mode (its own socket
    reader would take EAGAIN for the end of the answer)."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def makefile(self, mode: str) -> io.BufferedReader:
        return io.BufferedReader(self)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        try:
            return self._sock.recv_into(buffer)
        except BlockingIOError:
            raise TimeoutError("timed out") from None


class _FastHTTPS(http.client.HTTPSConnection):
    def connect(self) -> None:
        # the peer check comes before the TLS handshake: nothing is sent to a refused one
        http.client.HTTPConnection.connect(self)
        check_peer(self.host, self.port, self.sock)
        self.sock = self._context.wrap_socket(self.sock,  # type: ignore[attr-defined]
                                              server_hostname=self.host)

    def answer_source(self) -> Any:
        """The TLS socket itself: it is in Python's timeout mode."""
        return self.sock


#: What the fast path sends as is; anything else (spaces, non-ASCII, IDNA) goes by requests.
_PLAIN_URL = re.compile(r"https?://[A-Za-z0-9.\-\[\]:]+(/[!-~]*)?")


def _fast_target(target: str) -> tuple[str, str, int | None, str] | None:
    """``(scheme, host, port, path)`` when ``target`` can go by bare http.client: a plain
    ASCII URL and no proxy configured for it in the environment (requests handles those)."""
    if not _PLAIN_URL.fullmatch(target):
        return None
    parts = urlsplit(target)
    if _env_proxies(parts.scheme, parts.netloc) or not parts.hostname:
        return None
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return parts.scheme, parts.hostname, parts.port, path


def _post_fast(scheme: str, host: str, port: int | None, path: str, body: bytes,
               headers: dict[str, str], timeout: float,
               limit: int) -> tuple[int, str | None, bytes, str]:
    """POST with http.client: ``(status, Location, first limit+1 bytes, encoding)``.

    A fifth of requests' CPU per call (no Session merging, hooks, cookies or adapters),
    which at hundreds of fires a second per replica is most of an engine's CPU. The request
    head is written in one piece (:func:`_request_head`); http.client reads the answer."""
    conn: _FastHTTP | _FastHTTPS
    if scheme == "https":
        conn = _FastHTTPS(host, port, timeout=timeout, context=_tls_context())
    else:
        conn = _FastHTTP(host, port, timeout=timeout)
    try:
        head = _request_head(host, port or conn.default_port, conn.default_port, path,
                             len(body), headers)
        if head is None:  # a value http.client must check (and refuse) itself
            conn.request("POST", path, body=body, headers={**BASE_HEADERS, **headers,
                                                           "Connection": "close"})
        else:
            conn.connect()
            cast(Any, conn.sock).sendall(head + body)
        # http.client parses the answer (status, headers, chunks) off the socket
        resp = _Response(conn.answer_source(), method="POST")
        resp.begin()
        raw = resp.read(limit + 1)
        encoding = requests.utils.get_encoding_from_headers(cast(Any, resp.msg)) or "utf-8"
        return resp.status, resp.getheader("Location"), raw, encoding
    except BlockingIOError:  # the kernel's send timeout on the blocking socket
        raise TimeoutError(f"timed out after {timeout}s") from None
    finally:
        conn.close()


#: A header line as the email parser (http.client's) takes it: a name, then a colon.
_FIELD = re.compile(r"[\x21-\x39\x3b-\x7e]*:")


def _parse_headers(fp: Any) -> http.client.HTTPMessage:
    """http.client's ``parse_headers`` without the email parser (a twentieth of an HTTP
    fire's CPU): the same header lines (``_read_headers``: line and count limits) and the
    same fields in a real ``HTTPMessage``, each as the parser's compat32 policy stores it -
    the value after the colon without its leading blanks, folded lines appended as they
    came, the line end dropped. A line that is neither a field nor a folded one ends the
    headers, as the parser takes it for the body."""
    msg = http.client.HTTPMessage()
    fields: list[list[str]] = []
    for raw in http.client._read_headers(fp):  # type: ignore[attr-defined]
        line = raw.decode("iso-8859-1")
        if line in ("\r\n", "\n", ""):
            break
        if line[0] in " \t" and fields:
            fields[-1][1] += line
        elif _FIELD.match(line):
            name, value = line.split(":", 1)
            fields.append([name, value.lstrip(" \t")])
        else:
            break
    for name, value in fields:
        msg.set_raw(name, value.rstrip("\r\n"))
    return msg


def _light_begin() -> Any:
    """``HTTPResponse.begin`` (status line, 1xx answers, framing: chunked, length or
    close) as the standard library has it, reading its headers with
    :func:`_parse_headers`; the stock one if its code no longer looks the parser up by
    that name."""
    stock = http.client.HTTPResponse.begin
    if "parse_headers" not in stock.__code__.co_names:
        return stock
    return types.FunctionType(stock.__code__,
                              {**vars(http.client), "parse_headers": _parse_headers},
                              stock.__name__, stock.__defaults__, stock.__closure__)


class _Response(http.client.HTTPResponse):
    """http.client's answer parsing with the lighter header parse (:func:`_light_begin`)."""

    begin = _light_begin()


#: Sent with every HTTP fire, before the fire's own x-reqid / x-ruqi-* headers.
BASE_HEADERS = {"User-Agent": USER_AGENT, "Accept": "*/*", "Content-Type": "application/json"}
#: What a header value of the one-piece head may hold: printable ASCII and spaces.
_PLAIN_VALUE = re.compile(r"[ -~]*")


def _request_head(host: str, port: int, default_port: int, path: str, length: int,
                  headers: dict[str, str]) -> bytes | None:
    """The request line and headers as http.client would send them, built in one go.

    http.client validates and writes each header on its own (a regex and an encode per
    line), which was a fifth of an HTTP fire's CPU. The URL passed ``_PLAIN_URL`` already;
    None when a value is anything but printable ASCII, so http.client judges it."""
    if not all(_PLAIN_VALUE.fullmatch(v) for v in headers.values()):
        return None
    name = f"[{host}]" if ":" in host else host
    lines = [f"POST {path} HTTP/1.1",
             f"Host: {name}" if port == default_port else f"Host: {name}:{port}",
             "Accept-Encoding: identity",
             *(f"{k}: {v}" for k, v in BASE_HEADERS.items()),
             *(f"{k}: {v}" for k, v in headers.items()),
             f"Content-Length: {length}", "Connection: close", "", ""]
    return "\r\n".join(lines).encode("ascii")


@functools.lru_cache(maxsize=1)
def _tls_context() -> ssl.SSLContext:
    return ssl.create_default_context()


def _post_requests(target: str, payload: dict[str, Any], scheme: str, netloc: str,
                   headers: dict[str, str], timeout: float,
                   limit: int) -> tuple[int, str | None, bytes, str]:
    """POST through requests: proxies from the environment, IDNA names, odd URLs."""
    with _session().post(target, json=payload,
                         headers={**headers, "Connection": "close"}, timeout=timeout,
                         proxies=_proxies(scheme, netloc),
                         allow_redirects=False, stream=True) as resp:
        raw = resp.raw.read(limit + 1, decode_content=True)
        return resp.status_code, resp.headers.get("Location"), raw, resp.encoding or "utf-8"
