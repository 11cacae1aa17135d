"""Access and error logs: the original's field order, masking, escaping, rotation."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

from butterfly_common.logfiles import flush_all
from butterfly_common.logs import configure_logging, error_log
from butterfly_common.settings import load_settings
from butterfly_common.testing import wait_until

ACCESS = re.compile(
    r"^(?P<date>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)\t(?P<pid>\d+)\t(?P<where>[\w.]+:\d+)\t"
    r"(?P<ip>[^\t]+)\t(?P<reqid>[0-9A-F]{16})\t(?P<method>[A-Z]+)\t(?P<path>[^\t]*)\t"
    r"cost:(?P<cost>\d+\.\d{6})\tstat:(?P<stat>[^\t]*)\tuser:(?P<user>[^\t]*)\t"
    r"talk:(?P<talk>[^\t]*)\tparams:(?P<params>[^\t]*)\terror_msg:(?P<error>[^\t]*)\t"
    r"res:(?P<res>[^\t]*)$")


def access_lines(app) -> list[re.Match]:
    for handler in __import__("logging").getLogger("butterfly.access").handlers:
        handler.flush()
    text = (app.log_dir / "acc.log").read_text()
    lines = text.splitlines()
    matches = [ACCESS.match(line) for line in lines]
    assert all(matches), [line for line, m in zip(lines, matches, strict=True) if not m]
    return matches


def test_access_line_fields(make_app):
    app = make_app()
    client = app.test_client()
    response = client.get("/kinds/timed")
    client.get("/kinds/echo?a=hi&b=2")
    client.get("/nope")
    first, second, third = access_lines(app)
    assert first["reqid"] == response.headers["x-reqid"]
    assert (first["ip"], first["method"], first["path"], first["stat"], first["user"]) == (
        "127.0.0.1", "GET", "/kinds/timed", "OK", "-")
    assert re.fullmatch(r"step=\d+\.\d{3}", first["talk"])
    assert first["res"] == "k=v"
    assert second["params"] == "a=hi;b=2"
    assert (third["stat"], third["error"]) == ("ERR_NOT_FOUND", "API Not Found")


def test_secrets_masked_and_values_escaped(make_app):
    app = make_app()
    client = app.test_client()
    client.post("/secure/login", json={"user": "bob\tx\nINJECTED", "password": "hunter2"})
    (line,) = access_lines(app)
    assert "hunter2" not in line.group(0)
    assert set(line["params"].split(";")) == {"user=bob\\tx\\nINJECTED", "password=***"}


def test_declared_secret_params_are_masked_in_every_log_line_whatever_their_name(make_app):
    app = make_app()
    client = app.test_client()
    hidden = ["plain-value-1", "form-value-2", "nested-value-3", "refused-value-4",
              "raised-value-5", "badtype-value-6"]
    client.post("/secure/store", json={"name": "n1", "value": hidden[0]})
    client.post("/secure/store", data={"name": "n2", "value": hidden[1]})
    client.post("/secure/store", json={"name": "n3", "value": 1,
                                       "extra": {"deep": [hidden[2]]}})
    assert client.post("/secure/store", json={"name": "n4", "value": hidden[3],
                                              "fail": "refuse"}).status_code == 400
    assert client.post("/secure/store", json={"name": "n5", "value": hidden[4],
                                              "fail": "raise"}).status_code == 500
    assert client.post("/secure/store", json={"name": "n6", "value": "v",
                                              "extra": hidden[5]}).status_code == 400
    lines = access_lines(app)
    assert [m["params"].split(";")[1] for m in lines[:2]] == ["value=***", "value=***"]
    flush_all()
    for handler in [*error_log.handlers, *logging.getLogger().handlers]:
        handler.flush()
    text = "\n".join(p.read_text() for p in app.log_dir.glob("*"))
    assert "storing n1=***" in text and "RuntimeError: could not store '***'" in text
    assert [h for h in hidden if h in text] == []


def test_bad_params_logged_with_reason(make_app):
    app = make_app()
    app.test_client().get("/kinds/echo?b=x")
    for handler in error_log.handlers:
        handler.flush()
    err = (app.log_dir / "err.log").read_text()
    assert "err_info=Param_check_failed" in err and "missing: a" in err


def test_exception_traceback_goes_to_err_log(make_app):
    app = make_app()
    app.test_client().get("/kinds/boom")
    for handler in error_log.handlers:
        handler.flush()
    err = (app.log_dir / "err.log").read_text()
    assert "RuntimeError: secret internal detail" in err and "Traceback" in err


def test_rotation_keeps_every_line(tmp_path):
    settings = load_settings({"BUTTERFLY_LOG_DIR": str(tmp_path), "BUTTERFLY_LOG_MAX_BYTES": "2048",
                              "BUTTERFLY_LOG_BACKUPS": "50"})
    directory = configure_logging(settings, "rot")
    log = __import__("logging").getLogger("butterfly.access")
    for i in range(300):
        log.info("line %05d %s", i, "x" * 40)
    flush_all()
    files = sorted(directory.glob("acc.log*"))
    assert len(files) > 3
    numbers = sorted(int(m) for f in files for m in re.findall(r"line (\d{5})", f.read_text()))
    assert numbers == list(range(300))
    # a batch is split where line-by-line writing would have rotated: no file overshoots
    longest = max(len(line) + 1 for f in files for line in f.read_text().splitlines())
    assert max(f.stat().st_size for f in files) < 2048 + longest


def access_text(directory: Path) -> str:
    path = directory / "acc.log"
    return path.read_text() if path.exists() else ""


def test_access_lines_are_written_within_the_flush_interval(tmp_path):
    settings = load_settings({"BUTTERFLY_LOG_DIR": str(tmp_path), "BUTTERFLY_LOG_FLUSH_MS": "50"})
    directory = configure_logging(settings, "batch")
    logging.getLogger("butterfly.access").info("batched line")
    # nobody flushes: the flusher thread writes it
    wait_until(lambda: "batched line" in access_text(directory), 10, what="flushed line")


def test_flush_ms_0_writes_every_line_at_once(tmp_path):
    settings = load_settings({"BUTTERFLY_LOG_DIR": str(tmp_path), "BUTTERFLY_LOG_FLUSH_MS": "0"})
    directory = configure_logging(settings, "sync")
    logging.getLogger("butterfly.access").info("at once")
    assert "at once" in access_text(directory)


def test_a_clean_exit_writes_every_buffered_line(tmp_path):
    """No flush call, a 10 s interval: logging's atexit hook must write the batch."""
    code = textwrap.dedent(f"""
        import logging
        from butterfly_common.logs import configure_logging
        from butterfly_common.settings import load_settings
        settings = load_settings({{"BUTTERFLY_LOG_DIR": {str(tmp_path)!r},
                                  "BUTTERFLY_LOG_FLUSH_MS": "10000"}})
        configure_logging(settings, "exit")
        for i in range(2000):
            logging.getLogger("butterfly.access").info("exit line %05d", i)
    """)
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    numbers = re.findall(r"exit line (\d{5})", access_text(tmp_path / "exit"))
    assert sorted(map(int, numbers)) == list(range(2000))


def test_direct_access_line_is_what_logging_writes(tmp_path):
    """write_access fills the batch itself when the set-up is ours; the line must be the
    one the LogRecord path formats (which it takes as soon as anything is added)."""
    from butterfly_common.logs import access_log, write_access
    from butterfly_common.request import Request

    directory = configure_logging(load_settings({"BUTTERFLY_LOG_DIR": str(tmp_path),
                                                 "BUTTERFLY_LOG_FLUSH_MS": "10000"}), "same")
    req = Request("0123456789ABCDEF", ip="10.0.0.1", method="QUEUE", funcname="/a/b")
    req.log_res.add("msg_id=1")
    req.log_params["password"] = "hunter2"
    seen: list[str] = []
    for _ in range(5):  # the two lines must fall in the same second to compare whole
        write_access(req, "OK")
        access_log.addFilter(lambda record: seen.append(record.getMessage()) or True)
        write_access(req, "OK")
        access_log.filters.clear()
        flush_all()
        direct, through_logging = access_text(directory).splitlines()[-2:]
        if direct[:19] == through_logging[:19]:
            break
    assert seen, "the second line did not go through logging"
    cost = re.compile(r"cost:[0-9.]+")  # the time since the request began: differs
    assert cost.sub("", direct) == cost.sub("", through_logging)
    assert ACCESS.match(direct) and "hunter2" not in direct


def test_exit_during_a_flush_does_not_hang(tmp_path):
    """logging.shutdown holds the handler's lock, then flushes; a flusher that entered its
    flush meanwhile (write lock held) must not need the handler's lock to finish."""
    import io
    import threading

    from butterfly_common.logfiles import BufferedStreamHandler

    stream = io.StringIO()
    handler = BufferedStreamHandler(stream, interval=60)
    handler.emit(logging.makeLogRecord({"msg": "first"}))
    handler.acquire()  # logging.shutdown's first step with each handler
    flusher = threading.Thread(target=handler.flush, daemon=True)
    flusher.start()
    try:
        wait_until(lambda: handler._write_lock.locked() or not flusher.is_alive(), 10,
                   what="the flusher inside its flush")
        handler.emit(logging.makeLogRecord({"msg": "second"}))
        closer = threading.Thread(target=lambda: (handler.flush(), handler.close()),
                                  daemon=True)
        closer.start()  # shutdown's flush and close: the handler lock is still held
        closer.join(10)
        flusher.join(10)
        assert not flusher.is_alive() and not closer.is_alive(), "deadlocked"
    finally:
        handler.release()
    assert stream.getvalue() == "first\nsecond\n"


def test_fork_writes_no_line_twice(tmp_path):
    settings = load_settings({"BUTTERFLY_LOG_DIR": str(tmp_path),
                              "BUTTERFLY_LOG_FLUSH_MS": "10000"})
    directory = configure_logging(settings, "fork")
    log = logging.getLogger("butterfly.access")
    log.info("before fork")  # still in the parent's batch at the fork
    pid = os.fork()
    if pid == 0:  # the child: log, write, leave without running the parent's atexit hooks
        log.info("in child")
        flush_all()
        os._exit(0)
    assert os.waitpid(pid, 0)[1] == 0
    flush_all()
    text = access_text(directory)
    assert text.count("before fork") == 1 and text.count("in child") == 1


def test_stdout_mode(tmp_path, capsys):
    settings = load_settings({"BUTTERFLY_LOG_DIR": "-"})
    assert configure_logging(settings, "x") is None
    __import__("logging").getLogger("butterfly.access").info("to stdout")
    flush_all()
    assert "to stdout" in capsys.readouterr().out
