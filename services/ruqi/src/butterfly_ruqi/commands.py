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

A run may be given a :class:`~butterfly_ruqi.cancel.Cancel` (overlap ``cancel_other``):
when it is set, a script's process group gets SIGTERM (SIGKILL ``KILL_GRACE`` seconds
later), a topic message still queued is deleted through the broker (a started one cannot
be stopped: the outcome says so), and an HTTP call is abandoned (its answer is no longer
waited for).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from butterfly_common import Refusal, retstat, tracing
from butterfly_common.httpclient import envelope_stat

from . import http_transport, safety, topics
from .allowlist import AllowList
from .cancel import Cancel

INTERPRETERS = ("python", "python3", "bash", "sh")
#: Seconds a canceled script has between SIGTERM and SIGKILL (to its process group).
KILL_GRACE = 2.0


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


def run_http(command: Command, timeout: float, headers: dict[str, str],
             cancel: Cancel | None = None) -> Outcome:
    """POST; success is a 2xx and, for a butterfly envelope, ``stat == "OK"``.

    ``Connection: close``: a fire every few seconds gains nothing from keep-alive, and a
    pooled connection the callee has dropped in the meantime would fail a POST we must not
    blindly retry. Redirects are not followed (a 3xx is recorded as the answer, failed):
    following one would leave the allow-list. Only ``RUQI_OUTPUT_MAX_BYTES`` of the body
    are read. The transport (and its peer check) is http_transport.py. With ``cancel``
    the call runs on its own thread, abandoned (left to its timeout) when canceled.
    """
    if cancel is not None:
        return _abandonable(lambda: run_http(command, timeout, headers), cancel,
                            "abandoned: the HTTP call had not answered")
    limit = safety.current().output_max_bytes
    try:
        answer = http_transport.post(command.target, command.body, headers, timeout, limit)
    except http_transport.ERRORS as exc:
        return Outcome(False, _cut(f"{type(exc).__name__}: {exc}"))
    text = answer.raw.decode(answer.encoding, "replace")
    ok = 200 <= answer.status < 300
    try:
        decoded = json.loads(text) if len(answer.raw) <= limit else None
    except ValueError:
        decoded = None
    stat = envelope_stat(decoded)
    if ok and stat is not None:
        ok = stat == retstat.OK
    if 300 <= answer.status < 400:
        text = f"redirect to {answer.location!r} not followed\n{text}"
    return Outcome(ok, _cut(f"HTTP {answer.status} {text}"))


def _abandonable(call: Callable[[], Outcome], cancel: Cancel, note: str) -> Outcome:
    """``call()`` on a daemon thread; its outcome, or ``note`` once ``cancel`` is set."""
    box: list[Outcome] = []
    over = threading.Event()

    def task() -> None:
        try:
            box.append(call())
        except Exception as exc:  # run_http never raises; a bug must not hang the fire
            box.append(Outcome(False, _cut(f"{type(exc).__name__}: {exc}")))
        finally:
            over.set()

    cancel.on_cancel(over.set)
    try:
        threading.Thread(target=task, name="ruqi-http", daemon=True).start()
        over.wait()
    finally:
        cancel.off(over.set)
    return box[0] if box else Outcome(False, note)


def run_topic(command: Command, timeout: float, reqid: str, msg_id: str,
              wait: bool, cancel: Cancel | None = None) -> Outcome:
    """Publish (idempotent on ``msg_id``); optionally wait for the handler's result.

    Only a fire that waits can be canceled (one that does not has ended once published):
    the wait stops, and the message is deleted if no worker took it yet."""
    try:
        published = topics.publish(command.target, command.body, reqid=reqid, msg_id=msg_id,
                                   timeout=timeout)
    except Exception as exc:
        return Outcome(False, _cut(f"publish failed: {type(exc).__name__}: {exc}"))
    if not wait:
        return Outcome(True, f"msg_id={published}")
    state = topics.wait(published, timeout,
                        stop=cancel.is_set if cancel is not None else None)
    if cancel is not None and cancel.is_set():
        return Outcome(False, _cut(f"msg_id={published} {topics.cancel(published)}"))
    if state is not None and state[0] in ("finished", "failed"):
        status, result = state
        stat = envelope_stat(result)
        ok = status == "finished" and stat in (None, retstat.OK)
        return Outcome(ok, _cut(f"msg_id={published} status={status} "
                                f"result={json.dumps(result, default=str)}"))
    return Outcome(False, f"msg_id={published} no result within {timeout}s")


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    """Signal the script's process group (its own session: children go too), while
    the script is not reaped yet."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)


def run_script(command: Command, timeout: float, job_vars: dict[str, str],
               cancel: Cancel | None = None) -> Outcome:
    """Run the argv (no shell) in the script dir; 124 and a note on timeout, as the original.

    The environment is minimal (PATH, LANG, HOME, TZ, ``RUQI_SCRIPT_ENV_PASS``, the job's
    variables): the service's own (admin token, DB URL...) would end up in public history.
    Output goes to a temp file, so a chatty script cannot fill the memory; only the first
    ``RUQI_OUTPUT_MAX_BYTES`` are read back. The script leads its own process group
    (session), so a timeout or a cancel stops what it started too.
    """
    conf = safety.current()
    # RUQI_SCRIPT_USER: another uid cannot read this process's /proc/<pid>/environ
    as_user: dict[str, Any] = {}
    if conf.script_user is not None and conf.script_user[0] != os.geteuid():
        as_user = {"user": conf.script_user[0], "group": conf.script_user[1],
                   "extra_groups": []}
    with tempfile.TemporaryFile() as out_file:
        try:
            proc = subprocess.Popen(list(command.argv), cwd=command.cwd,  # noqa: S603
                                    env=conf.script_env(job_vars), stdout=out_file,
                                    stderr=subprocess.STDOUT, start_new_session=True,
                                    **as_user)
        except OSError as exc:
            return Outcome(False, _cut(f"cannot start: {exc}"))
        kill = threading.Timer(KILL_GRACE, _signal_group, (proc, signal.SIGKILL))
        kill.daemon = True

        def stop() -> None:
            _signal_group(proc, signal.SIGTERM)
            kill.start()

        if cancel is not None:
            cancel.on_cancel(stop)
        try:
            proc.wait(timeout=timeout)
            head = f"retcode={proc.returncode}"
            ok = proc.returncode == 0
        except subprocess.TimeoutExpired:
            _signal_group(proc, signal.SIGKILL)
            proc.wait()
            head, ok = f"retcode=124 timeout after {timeout}s", False
        finally:
            if cancel is not None:
                cancel.off(stop)
            kill.cancel()
        out_file.seek(0)
        out = out_file.read(conf.output_max_bytes + 1).decode("utf-8", "replace")
    return Outcome(ok, _cut(f"{head}\n{out}"))


def run_command(cmd: str, *, script_dir: str | None, timeout: float, reqid: str, job_id: str,
                scheduled: float, wait_result: bool = False,
                cancel: Cancel | None = None) -> Outcome:
    """Run one fire of ``cmd``; never raises (a failure is an Outcome). ``cancel``:
    stops the run when set (cancel_other, see the module doc)."""
    try:
        command = parse_command(cmd, script_dir, max_len=len(cmd))
    except Refusal as exc:
        return Outcome(False, f"{exc.stat}: {exc.reason}")
    ms = round(scheduled * 1000)
    if command.kind == "http":
        headers = {"x-reqid": reqid, "x-ruqi-job": job_id, "x-ruqi-scheduled": str(ms)}
        traceparent = tracing.traceparent()  # the fire's span, when tracing is on
        if traceparent:
            headers["traceparent"] = traceparent
        return run_http(command, timeout, headers, cancel)
    if command.kind == "topic":
        return run_topic(command, timeout, reqid, f"ruqi:{job_id}:{ms}", wait_result, cancel)
    env = {"BUTTERFLY_REQID": reqid, "RUQI_JOB_ID": job_id, "RUQI_SCHEDULED_MS": str(ms)}
    return run_script(command, timeout, env, cancel)
