"""What a fire does: an HTTP POST, a topic publish, or an allow-listed script.

The cmd string keeps the original's shapes, chosen by prefix:

* ``http(s)://host/path[#{json}]`` - POST the JSON object (``{}`` by default) to a target
  ``RUQI_HTTP_ALLOW`` allows (allowlist.py); redirects are not followed;
* ``/app/handler[#{json}]``        - publish the object to that baichuan topic;
* anything else                    - a script inside ``RUQI_SCRIPT_DIR`` (off when unset),
  ``[python|python3|bash|sh] <file> [args...]`` or ``<executable file> [args...]``.

The body is split at the first ``#{`` whose remainder parses as a JSON object, so a URL or
JSON holding ``#`` no longer breaks the command (one of the original's flaws). Scripts run as
an argv list - never through a shell - from inside the script directory, with a minimal
environment (safety.py): a script never sees the service's secrets.

Each run carries the fire's reqid (``x-reqid`` header / publish reqid) so the callee's
logs name the same id as ruqi's history row.
"""

from __future__ import annotations

import functools
import http.client
import io
import json
import os
import re
import shlex
import shutil
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from butterfly_common import Refusal

from . import safety, topics
from .allowlist import AllowList

INTERPRETERS = ("python", "python3", "bash", "sh")
USER_AGENT = "butterfly-ruqi"


@dataclass(frozen=True)
class Command:
    """A parsed cmd: ``kind`` is http, topic or script."""

    kind: str
    target: str = ""
    body: dict[str, Any] = field(default_factory=dict)
    argv: tuple[str, ...] = ()
    cwd: str = ""


@dataclass(frozen=True)
class Outcome:
    """How a run ended; ``output`` is already cut to the history column's size."""

    success: bool
    output: str


def split_body(cmd: str) -> tuple[str, dict[str, Any]]:
    """Split ``target#{json}`` at the first ``#{`` that starts a valid JSON object."""
    start = 0
    while (pos := cmd.find("#{", start)) != -1:
        try:
            body = json.loads(cmd[pos + 1:])
        except ValueError:
            start = pos + 1
            continue
        if isinstance(body, dict):
            return cmd[:pos], body
        start = pos + 1
    return cmd, {}


def _script(cmd: str, script_dir: str | None) -> Command:
    if not script_dir:
        raise Refusal("ERR_SCRIPT_DISABLED",
                           "script commands are off: set RUQI_SCRIPT_DIR to enable them")
    try:
        argv = shlex.split(cmd)
    except ValueError as exc:
        raise Refusal("ERR_BAD_CMD", f"cmd does not split into arguments: {exc}") from None
    if not argv:
        raise Refusal("ERR_BAD_CMD", "empty cmd")
    root = Path(script_dir).resolve()
    interpreter = argv[0] if argv[0] in INTERPRETERS else None
    rel = argv[1] if interpreter and len(argv) > 1 else (None if interpreter else argv[0])
    if rel is None:
        raise Refusal("ERR_SCRIPT_PATH", f"{interpreter} needs a script file")
    path = (root / rel).resolve()
    if not path.is_relative_to(root):
        raise Refusal("ERR_SCRIPT_PATH", f"script {rel!r} is outside RUQI_SCRIPT_DIR")
    if not path.is_file():
        raise Refusal("ERR_SCRIPT_PATH", f"script {rel!r} not found in RUQI_SCRIPT_DIR")
    if interpreter:
        exe = sys.executable if interpreter.startswith("python") else shutil.which(interpreter)
        if not exe:
            raise Refusal("ERR_SCRIPT_PATH", f"interpreter {interpreter!r} not installed")
        full = (exe, str(path), *argv[2:])
    else:
        if not os.access(path, os.X_OK):
            raise Refusal("ERR_SCRIPT_PATH", f"script {rel!r} is not executable")
        full = (str(path), *argv[1:])
    return Command("script", target=str(path), argv=full, cwd=str(root))


def parse_command(cmd: str, script_dir: str | None, max_len: int = 4096,
                  allow: AllowList | None = None) -> Command:
    """Validate ``cmd`` once, at add/modify time, and again before every run.

    ``allow`` (default: the process's ``RUQI_HTTP_ALLOW``) decides HTTP targets: asked on
    every call (a name may resolve elsewhere now), as is the script file's check."""
    if len(cmd) > max_len:
        raise Refusal("ERR_CMD_TOO_LONG", f"cmd has {len(cmd)} chars, limit {max_len}")
    command = _parse_target(cmd)
    if command is None:
        return _script(cmd.strip(), script_dir)
    if command.kind == "http":
        (allow or safety.current().allow).check_url(command.target)
    return command


@functools.lru_cache(maxsize=4096)
def _parse_target(cmd: str) -> Command | None:
    """The part of parsing that depends on the text alone, once per distinct cmd (the
    JSON body, the topic name): an HTTP or topic Command, None for a script. Callers
    only read the Command."""
    if any(ord(c) < 32 or ord(c) == 127 for c in cmd):
        raise Refusal("ERR_BAD_CMD", "cmd holds a control character (NUL, newline, ...)")
    cmd = cmd.strip()
    if cmd.startswith(("http://", "https://")):
        url, body = split_body(cmd)
        return Command("http", target=url, body=body)
    if cmd.startswith("/"):
        topic, body = split_body(cmd)
        if not topics.valid_topic(topic):
            raise Refusal("ERR_BAD_CMD", f"{topic!r} is not a topic name (/app/handler)")
        return Command("topic", target=topic, body=body)
    return None


def _cut(text: str) -> str:
    return safety.cut(text, safety.current().output_max_bytes)


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


def _check_peer(conn: HTTPConnection, sock: Any) -> None:
    try:
        safety.current().allow.check_peer(conn.host.strip("[]").lower(), conn.port,
                                          sock.getpeername()[0])
    except Refusal as exc:
        sock.close()
        raise PeerRefused(exc.reason) from None


class _CheckedHTTP(HTTPConnection):
    def _new_conn(self) -> Any:
        sock = super()._new_conn()
        _check_peer(self, sock)
        return sock


class _CheckedHTTPS(HTTPSConnection):
    def _new_conn(self) -> Any:
        sock = super()._new_conn()
        _check_peer(self, sock)
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
        _check_sock(self.host, self.port, self.sock)

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
        _check_sock(self.host, self.port, self.sock)
        self.sock = self._context.wrap_socket(self.sock,  # type: ignore[attr-defined]
                                              server_hostname=self.host)

    def answer_source(self) -> Any:
        """The TLS socket itself: it is in Python's timeout mode."""
        return self.sock


def _check_sock(host: str, port: int, sock: Any) -> None:
    try:
        safety.current().allow.check_peer(host.strip("[]").lower(), port,
                                          sock.getpeername()[0])
    except Refusal as exc:
        sock.close()
        raise PeerRefused(exc.reason) from None


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
        resp = conn.response_class(conn.answer_source(), method="POST")
        resp.begin()
        raw = resp.read(limit + 1)
        encoding = requests.utils.get_encoding_from_headers(cast(Any, resp.msg)) or "utf-8"
        return resp.status, resp.getheader("Location"), raw, encoding
    except BlockingIOError:  # the kernel's send timeout on the blocking socket
        raise TimeoutError(f"timed out after {timeout}s") from None
    finally:
        conn.close()


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


def run_http(command: Command, timeout: float, headers: dict[str, str]) -> Outcome:
    """POST; success is a 2xx and, for a butterfly envelope, ``stat == "OK"``.

    ``Connection: close``: a fire every few seconds gains nothing from keep-alive, and a
    pooled connection the callee has dropped in the meantime would fail a POST we must not
    blindly retry. Redirects are not followed (a 3xx is recorded as the answer, failed):
    following one would leave the allow-list. Only ``RUQI_OUTPUT_MAX_BYTES`` of the body
    are read.
    """
    parts = urlsplit(command.target)
    limit = safety.current().output_max_bytes
    fast = _fast_target(command.target)
    try:
        if fast is not None:
            body = json.dumps(command.body, allow_nan=False).encode()
            status, location, raw, encoding = _post_fast(*fast, body, headers, timeout, limit)
        else:
            status, location, raw, encoding = _post_requests(command, parts.scheme,
                                                             parts.netloc, headers, timeout,
                                                             limit)
    except (OSError, http.client.HTTPException, ValueError, requests.RequestException) as exc:
        return Outcome(False, _cut(f"{type(exc).__name__}: {exc}"))
    text = raw.decode(encoding, "replace")
    ok = 200 <= status < 300
    try:
        answer = json.loads(text) if len(raw) <= limit else None
    except ValueError:
        answer = None
    if ok and isinstance(answer, dict) and "stat" in answer:
        ok = answer["stat"] == "OK"
    if 300 <= status < 400:
        text = f"redirect to {location!r} not followed\n{text}"
    return Outcome(ok, _cut(f"HTTP {status} {text}"))


def _post_requests(command: Command, scheme: str, netloc: str, headers: dict[str, str],
                   timeout: float, limit: int) -> tuple[int, str | None, bytes, str]:
    """POST through requests: proxies from the environment, IDNA names, odd URLs."""
    with _session().post(command.target, json=command.body,
                         headers={**headers, "Connection": "close"}, timeout=timeout,
                         proxies=_proxies(scheme, netloc),
                         allow_redirects=False, stream=True) as resp:
        raw = resp.raw.read(limit + 1, decode_content=True)
        return resp.status_code, resp.headers.get("Location"), raw, resp.encoding or "utf-8"


def run_topic(command: Command, timeout: float, reqid: str, msg_id: str,
              wait: bool) -> Outcome:
    """Publish (idempotent on ``msg_id``); optionally wait for the handler's result."""
    try:
        published = topics.publish(command.target, command.body, reqid=reqid, msg_id=msg_id,
                                   timeout=timeout)
    except Exception as exc:
        return Outcome(False, _cut(f"publish failed: {type(exc).__name__}: {exc}"))
    if not wait:
        return Outcome(True, f"msg_id={published}")
    state = topics.wait(published, timeout)
    if state is not None and state[0] in ("finished", "failed"):
        status, result = state
        stat = (result or {}).get("stat")
        ok = status == "finished" and stat in (None, "OK")
        return Outcome(ok, _cut(f"msg_id={published} status={status} "
                                f"result={json.dumps(result, default=str)}"))
    return Outcome(False, f"msg_id={published} no result within {timeout}s")


def run_script(command: Command, timeout: float, job_vars: dict[str, str]) -> Outcome:
    """Run the argv (no shell) in the script dir; 124 and a note on timeout, as the original.

    The environment is minimal (PATH, LANG, HOME, TZ, ``RUQI_SCRIPT_ENV_PASS``, the job's
    variables): the service's own (admin token, DB URL...) would end up in public history.
    Output goes to a temp file, so a chatty script cannot fill the memory; only the first
    ``RUQI_OUTPUT_MAX_BYTES`` are read back.
    """
    conf = safety.current()
    # RUQI_SCRIPT_USER: another uid cannot read this process's /proc/<pid>/environ
    as_user: dict[str, Any] = {}
    if conf.script_user is not None and conf.script_user[0] != os.geteuid():
        as_user = {"user": conf.script_user[0], "group": conf.script_user[1],
                   "extra_groups": []}
    with tempfile.TemporaryFile() as out_file:
        try:
            proc = subprocess.run(list(command.argv), cwd=command.cwd,  # noqa: S603
                                  env=conf.script_env(job_vars), stdout=out_file,
                                  stderr=subprocess.STDOUT, timeout=timeout, check=False,
                                  **as_user)
            head = f"retcode={proc.returncode}"
            ok = proc.returncode == 0
        except subprocess.TimeoutExpired:
            head, ok = f"retcode=124 timeout after {timeout}s", False
        except OSError as exc:
            return Outcome(False, _cut(f"cannot start: {exc}"))
        out_file.seek(0)
        out = out_file.read(conf.output_max_bytes + 1).decode("utf-8", "replace")
    return Outcome(ok, _cut(f"{head}\n{out}"))


def run_command(cmd: str, *, script_dir: str | None, timeout: float, reqid: str, job_id: str,
                scheduled: float, wait_result: bool = False) -> Outcome:
    """Run one fire of ``cmd``; never raises (a failure is an Outcome)."""
    try:
        command = parse_command(cmd, script_dir, max_len=len(cmd))
    except Refusal as exc:
        return Outcome(False, f"{exc.stat}: {exc.reason}")
    ms = round(scheduled * 1000)
    if command.kind == "http":
        headers = {"x-reqid": reqid, "x-ruqi-job": job_id, "x-ruqi-scheduled": str(ms)}
        return run_http(command, timeout, headers)
    if command.kind == "topic":
        return run_topic(command, timeout, reqid, f"ruqi:{job_id}:{ms}", wait_result)
    env = {"BUTTERFLY_REQID": reqid, "RUQI_JOB_ID": job_id, "RUQI_SCHEDULED_MS": str(ms)}
    return run_script(command, timeout, env)
