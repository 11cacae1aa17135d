"""The streamed watch (``/wuxing/watch?stream=1``): NDJSON lines of the changes on one
held connection, keep-alive lines, an end after ``timeout``, the long poll's refusals, one
database read per change for all the streams of a process; and ``WuxingClient.watch`` on
it across a restart of a real (gunicorn) wuxing.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import json
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

from wuxing_testlib import AUTH, TOKEN, make_section, write_count

from butterfly_common.redis_client import make_redis
from butterfly_common.testing import ButterflyService, wait_until
from butterfly_wuxing import history
from butterfly_wuxing.client import WuxingClient
from butterfly_wuxing.models import History

WEB1 = {"namespace": "demo", "instance_name": "web1"}
NDJSON = "application/x-ndjson"


def _open(api, auth: bool = True, **params: Any):
    """The watch answer of ``params`` with stream=1, unbuffered (its lines as they come)."""
    return api.app.test_client().post(
        "/wuxing/watch", json={"namespace": "demo", "stream": True, **params},
        headers=AUTH if auth else {}, buffered=False)


def _lines(reply) -> Iterator[tuple[float, dict]]:
    """(monotonic time it arrived, decoded line) of a streamed answer."""
    pending = b""
    for chunk in reply.response:
        pending += chunk
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            yield time.monotonic(), json.loads(line)
    assert pending == b"", pending  # every line ends with a newline


def _setup(api) -> int:
    make_section(api)
    api.ok("instance_create", **WEB1, section_name="host", section_version="v1")
    return int(api.ok("namespace_get", namespace="demo")["data"]["revision"])


def test_stream_sends_the_changes_then_ends_after_the_timeout(fresh, redis_server, db_url):
    with contextlib.contextmanager(fresh)(redis_server.url, db_url,
                                          WUXING_WATCH_KEEPALIVE="0.2") as api:
        since = _setup(api)
        api.ok("instance_update_item", **WEB1, item_name="i|port", item_value=81)
        long_poll = api.ok("watch", namespace="demo", since=since, timeout=0)["data"]
        started = time.monotonic()
        reply = _open(api, since=since, timeout=1.5)
        assert reply.status_code == 200
        assert reply.headers["Content-Type"] == NDJSON
        assert "Content-Length" not in reply.headers
        got: list[tuple[float, dict]] = []
        for arrived, line in _lines(reply):
            got.append((arrived - started, line))
            if len(got) == 2:  # the pending change and its revision line came at once
                api.ok("instance_update_item", **WEB1, item_name="i|port", item_value=82)
        elapsed = time.monotonic() - started
        lines = [line for _, line in got]
        # the same change objects as the long poll's, then "all of revision R was sent"
        assert lines[0] == long_poll["changes"][0]
        assert lines[1] == {"stream": "revision", "revision": long_poll["revision"]}
        assert [c["item_value"] for c in lines if "stream" not in c] == [81, 82]
        second = next(n for n, c in enumerate(lines) if c.get("item_value") == 82)
        assert lines[second + 1] == {"stream": "revision", "revision": since + 2}
        # idle: a keep-alive every 0.2 s carrying the revision; then the end, at 1.5 s
        keepalives = [c for c in lines if c.get("stream") == "keepalive"]
        assert len(keepalives) >= 3, lines
        assert all(k["revision"] == since + 2 for k in keepalives[-3:])
        assert lines[-1] == {"stream": "end", "revision": since + 2}
        assert 1.5 <= elapsed < 6, elapsed
        gaps = [b - a for (a, _), (b, _) in itertools.pairwise(got)]
        assert max(gaps) < 1.2, gaps  # never silent much longer than the keep-alive


def test_an_idle_stream_starts_with_a_keepalive_and_no_since_is_now(api):
    since = _setup(api)
    lines = [line for _, line in _lines(_open(api, timeout=0.2))]
    assert lines == [{"stream": "keepalive", "revision": since},
                     {"stream": "end", "revision": since}]
    lines = [line for _, line in _lines(_open(api, since=since, timeout=0))]
    assert lines == [{"stream": "end", "revision": since}]


def _same_refusal(api, auth: bool = True, **params: Any) -> tuple[int, dict]:
    """The stream's refusal, asserted identical to the long poll's (status, body,
    x-reason, JSON)."""
    status, body, reason = api.call("watch", auth=auth, **params)
    reply = _open(api, auth=auth, **params)
    assert reply.status_code == status
    assert reply.headers["Content-Type"] == "application/json"
    assert reply.headers["x-reason"] == reason
    assert json.loads(reply.get_data()) == body
    return status, body


def test_compaction_is_refused_as_the_long_poll_refuses_it(api):
    since = _setup(api)
    api.ok("instance_update_item", **WEB1, item_name="i|port", item_value=81)
    History.update(c_time=dt.datetime.now() - dt.timedelta(days=100)).where(
        History.revision <= since).execute()
    assert history.prune(90) > 0
    status, body = _same_refusal(api, namespace="demo", since=since - 1, timeout=1)
    assert (status, body["stat"], body["compact_revision"]) == (
        410, "ERR_REVISION_COMPACTED", since)
    # from the compaction mark on, the stream has the rest
    lines = [line for _, line in _lines(_open(api, since=since, timeout=0))]
    assert [c.get("item_value") for c in lines] == [81, None, None]
    # and the other refusals of the long poll, the same way
    assert _same_refusal(api, namespace="demo", since=-1, timeout=1)[1]["stat"] \
        == "ERR_REVISION_IS_INVALID"
    assert _same_refusal(api, namespace="", timeout=1)[0] == 400


def test_anonymous_streams_are_refused_where_long_polls_are(fresh, redis_server, sqlite_url):
    read = "wuxing-read-token-0123456789"
    with contextlib.contextmanager(fresh)(redis_server.url, sqlite_url,
                                          WUXING_READ_TOKEN=read) as api:
        _setup(api)
        status, body = _same_refusal(api, auth=False, namespace="demo", timeout=1)
        assert (status, body["stat"]) == (401, "ERR_UNAUTHORIZED")
        reply = api.app.test_client().post(
            "/wuxing/watch", json={"namespace": "demo", "stream": True, "timeout": 0},
            headers={"Authorization": f"Bearer {read}"})
        assert reply.status_code == 200 and reply.headers["Content-Type"] == NDJSON


class _HistoryReads(logging.Handler):
    """Counts the queries of the history table peewee sends (its DEBUG log of each)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        sql = record.msg[0] if isinstance(record.msg, tuple) else str(record.msg)
        if sql.lstrip().upper().startswith("SELECT") and "wuxing_history" in sql:
            self.count += 1


def test_many_streams_read_the_database_once_per_change(api):
    streams, writes = 30, 4
    since = _setup(api)
    held: list[list[int]] = [[] for _ in range(streams)]
    opened = threading.Barrier(streams + 1)

    def stream(n: int) -> None:
        for _, line in _lines(_open(api, since=since, timeout=60)):
            if line.get("stream") == "keepalive" and not held[n]:
                held[n].append(0)
                opened.wait(30)
            elif "stream" not in line:
                held[n].append(line["item_value"])
                if len(held[n]) > writes:
                    return

    threads = [threading.Thread(target=stream, args=(n,), daemon=True)
               for n in range(streams)]
    for thread in threads:
        thread.start()
    opened.wait(30)  # every stream is open and waiting at ``since``
    counter = _HistoryReads()
    peewee = logging.getLogger("peewee")
    level = peewee.level
    peewee.addHandler(counter)
    peewee.setLevel(logging.DEBUG)
    try:
        for value in range(81, 81 + writes):
            api.ok("instance_update_item", **WEB1, item_name="i|port", item_value=value)
            wait_until(lambda v=value: all(h[-1] == v for h in held), 20,
                       what=f"every stream holds {value}")
    finally:
        peewee.removeHandler(counter)
        peewee.setLevel(level)
    for thread in threads:
        thread.join(20)
    assert all(h == [0, *range(81, 81 + writes)] for h in held)
    # one read of the history per change for the 30 streams (the writes read none)
    assert counter.count == writes, counter.count


def test_client_streams_every_change_in_order_once_across_a_restart(redis_server,
                                                                    sqlite_url):
    # the version keys other tests left would be ahead of this new database
    make_redis(redis_server.url).flushall()
    env = {"BUTTERFLY_REDIS_URL": redis_server.url, "BUTTERFLY_DB_URL": sqlite_url,
           "BUTTERFLY_TIMEOUT": "600", "BUTTERFLY_ADMIN_TOKEN": TOKEN,
           "BUTTERFLY_WORKERS": "2", "WUXING_WATCH_KEEPALIVE": "0.5"}
    svc = ButterflyService("wuxing", env).start()
    port, url = svc.port, svc.url
    wx = WuxingClient(url, token=TOKEN)
    for handler, params in (
            ("section_create", {}),
            ("section_item_add", {"item_name": "i|n", "item_default": 0}),
            ("section_enable", {})):
        wx.call(f"/wuxing/{handler}", namespace="demo", section_name="w",
                section_version="1", **params)
    wx.call("/wuxing/instance_create", namespace="demo", instance_name="feed",
            section_name="w", section_version="1")
    since = wx.revision("demo")
    # the stream really streams through gunicorn: a change arrives long before the end
    lines = wx.stream("watch", {"namespace": "demo", "since": since, "timeout": 30,
                                "stream": True})
    assert next(lines) == {"stream": "keepalive", "revision": since}
    started = time.monotonic()
    wx.update("demo", "feed", "i|n", 0)
    got = [next(lines), next(lines)]
    while got[0].get("stream") == "keepalive":  # (a loaded machine: the write was slow)
        got = [got[1], next(lines)]
    assert got == [{**got[0], "item_value": 0}, {"stream": "revision", "revision": since + 1}]
    assert time.monotonic() - started < 10
    lines.close()
    since = wx.revision("demo")

    seen: list[tuple[int, int]] = []
    total, restart_at = 400, 200

    def watcher() -> None:
        for change in WuxingClient(url, token=TOKEN).watch("demo", since, poll=2):
            seen.append((change["revision"], change["item_value"]))
            if len(seen) >= total:
                return

    thread = threading.Thread(target=watcher, daemon=True)
    thread.start()

    try:
        for n in range(1, restart_at + 1):
            write_count(url, n)
        svc.stop()
        svc = ButterflyService("wuxing", env, port=port).start()
        for n in range(restart_at + 1, total + 1):
            write_count(url, n)
        thread.join(60)
    finally:
        svc.stop()
    assert [v for _, v in seen] == list(range(1, total + 1))
    revisions = [r for r, _ in seen]
    assert revisions == sorted(set(revisions))


def test_client_long_polls_a_server_that_refuses_streams():
    """A wuxing from before streams answers ``stream`` as any unknown parameter
    (ERR_BAD_PARAMS): ``watch()`` goes on with long polls, every change once, in order.
    The server here is a stand-in answering that version's envelopes."""
    import http.server

    asked: list[dict] = []
    feed = [{"revision": r, "item_name": "i|n", "item_value": r} for r in (5, 6, 7)]

    class OldWuxing(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            params = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            asked.append(params)
            if "stream" in params:
                status, body, extra = 400, {"stat": "ERR_BAD_PARAMS"}, [
                    ("x-reason", "unknown: stream")]
            else:
                changes = [c for c in feed if c["revision"] > params["since"]][:2]
                revision = changes[-1]["revision"] if changes else params["since"]
                status, body, extra = 200, {"stat": "OK", "data": {
                    "revision": revision, "compact_revision": 0, "changes": changes}}, []
            data = json.dumps(body).encode()
            self.send_response(status)
            for name, value in [("Content-Type", "application/json"), *extra]:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), OldWuxing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        wx = WuxingClient(f"http://127.0.0.1:{server.server_address[1]}")
        got = []
        for change in wx.watch("demo", since=4, poll=1):
            got.append(change["revision"])
            if len(got) == 3:
                break
    finally:
        server.shutdown()
    assert got == [5, 6, 7]
    assert "stream" in asked[0] and all("stream" not in a for a in asked[1:])
