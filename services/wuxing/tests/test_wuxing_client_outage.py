"""WuxingClient(cache_dir=...) through a real wuxing outage: wuxing under gunicorn on SQLite,
SIGKILLed (master and workers), restarted on the same port.

The outage lasts ``BUTTERFLY_OUTAGE_SECONDS`` (default 5) of reads in a loop; the issue's
ten minutes: ``BUTTERFLY_OUTAGE_SECONDS=600 .venv/bin/python -m pytest
services/wuxing/tests/test_wuxing_client_outage.py -q``.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import stat
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from wuxing_testlib import AUTH, TOKEN

from butterfly_common.httpclient import ServiceError, TransportError
from butterfly_common.testing import ButterflyService, child_pids, port_open, wait_until
from butterfly_wuxing.client import WuxingClient
from butterfly_wuxing.client_cache import ReleaseCache

OUTAGE_SECONDS = float(os.environ.get("BUTTERFLY_OUTAGE_SECONDS", "5"))
NS = "outage"


def _service(redis_url: str, db_url: str, port: int | None = None) -> ButterflyService:
    return ButterflyService("wuxing", {"BUTTERFLY_REDIS_URL": redis_url,
                                       "BUTTERFLY_DB_URL": db_url, "BUTTERFLY_TIMEOUT": "600",
                                       "BUTTERFLY_WORKERS": "1",
                                       "BUTTERFLY_ADMIN_TOKEN": TOKEN}, port=port)


def _ok(url: str, handler: str, **params) -> dict:
    body = requests.post(f"{url}/wuxing/{handler}", json=params, headers=AUTH,
                         timeout=30).json()
    assert body["stat"] == "OK", (handler, body)
    return body.get("data") or {}


def _crash(svc: ButterflyService) -> None:
    """SIGKILL the workers and the master, as a crashed host would: nothing answers."""
    assert svc.proc is not None
    for pid in child_pids(svc.proc.pid):
        os.kill(pid, signal.SIGKILL)
    svc.kill()
    wait_until(lambda: not port_open(svc.port), 10, what="nothing listens any more")


def _only_cached(home, *namespaces: str) -> None:
    """The cache directory holds the files of ``namespaces`` and nothing else exists."""
    cache = ReleaseCache(home / "cache")
    assert sorted(p.name for p in home.iterdir()) == ["cache"]
    assert sorted(cache.directory.iterdir()) == sorted(cache.path(n) for n in namespaces)


def _outages(caplog: pytest.LogCaptureFixture) -> tuple[int, int]:
    client = [r.getMessage() for r in caplog.records if r.name == "butterfly_wuxing.client"]
    return (sum("cannot be reached" in m for m in client),
            sum("answers again" in m for m in client))


def test_config_survives_a_wuxing_outage_from_the_cache(redis_server, sqlite_url, tmp_path,
                                                       caplog):
    caplog.set_level(logging.INFO)
    home = tmp_path / "home"  # (the database is in tmp_path)
    cache_dir = home / "cache"
    svc = _service(redis_server.url, sqlite_url).start()
    port = svc.port
    try:
        _ok(svc.url, "section_create", namespace=NS, section_name="s", section_version="1")
        _ok(svc.url, "section_item_add", namespace=NS, section_name="s", section_version="1",
            item_name="i|port", item_default=80)
        _ok(svc.url, "section_enable", namespace=NS, section_name="s", section_version="1")
        _ok(svc.url, "instance_create", namespace=NS, instance_name="web1",
            section_name="s", section_version="1")
        wx = WuxingClient(svc.url, token=TOKEN, client="web-7", labels=["canary"],
                          cache_dir=cache_dir, timeout=5)

        fresh = wx.config(NS)
        assert fresh["stale"] is False
        assert fresh["values"] == {"web1": {"i|port": 80}}
        path = ReleaseCache(cache_dir).path(NS)
        assert stat.S_IMODE(cache_dir.stat().st_mode) == 0o700
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert TOKEN not in path.read_text()  # the answer only, never the credential
        # a refusal (4xx) is an answer, not an outage: raised even with a cached release
        ReleaseCache(cache_dir).save("bad name", fresh)
        with pytest.raises(ServiceError) as refused:
            wx.config("bad name")
        assert refused.value.status == 400
        # and a namespace the server refuses (or that is down) writes nothing anywhere
        with pytest.raises(ServiceError):
            wx.config("../escape")
        _only_cached(home, NS, "bad name")

        _crash(svc)
        started = time.monotonic()
        reads, last_age = 0, -1.0
        while time.monotonic() - started < OUTAGE_SECONDS:
            got = wx.config(NS)
            assert got["stale"] is True
            assert got["values"] == fresh["values"]
            assert (got["revision"], got["gray_id"]) == (fresh["revision"], fresh["gray_id"])
            assert got["age"] >= last_age and got["cached_at"] <= time.time()
            last_age = got["age"]
            reads += 1
            time.sleep(0.02)
        assert not port_open(port)
        assert last_age >= OUTAGE_SECONDS * 0.9
        assert _outages(caplog) == (1, 0), "the outage is logged once, not per read"
        print(f"outage: {reads} stale reads over {OUTAGE_SECONDS:.0f} s")

        # no cached release: the error it raises without a cache; ../ stays in the dir
        with pytest.raises(TransportError):
            wx.config("other")
        with pytest.raises(TransportError):
            wx.config("../escape")
        _only_cached(home, NS, "bad name")
        # a corrupted cache file is ignored with a warning: the error again, no crash
        ReleaseCache(cache_dir).path("broken").write_text("{half a file")
        caplog.clear()
        with pytest.raises(TransportError):
            wx.config("broken")
        assert "corrupted" in caplog.text

        svc = _service(redis_server.url, sqlite_url, port=port).start()
        _ok(svc.url, "instance_update_item", namespace=NS, instance_name="web1",
            item_name="i|port", item_value=81)
        got = wait_until(lambda: (lambda r: r if r["values"]["web1"]["i|port"] == 81 else None)(
            wx.config(NS)), 30, interval=0.05, what="the change read through")
        assert got["stale"] is False and "age" not in got
        assert got["revision"] > fresh["revision"]
        assert _outages(caplog) == (0, 1), "the recovery is logged once"
        cached = ReleaseCache(cache_dir).load(NS)
        assert cached is not None and cached.release["values"] == {"web1": {"i|port": 81}}

        # the next outage answers the refreshed release
        _crash(svc)
        again = wx.config(NS)
        assert again["stale"] is True and again["values"] == {"web1": {"i|port": 81}}
        assert _outages(caplog) == (1, 1)
    finally:
        svc.stop()


class _Answer503(BaseHTTPRequestHandler):
    """A wuxing whose database is down: an envelope with 503."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = json.dumps({"stat": "ERR_UNAVAILABLE"}).encode()
        self.send_response(503)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_a_5xx_answer_counts_as_an_outage(tmp_path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Answer503)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        ReleaseCache(tmp_path).save(NS, {"revision": 3, "gray_id": None, "values": {}},
                                    now=time.time() - 60)
        got = WuxingClient(url, cache_dir=tmp_path).config(NS)
        assert got["stale"] is True and got["revision"] == 3 and got["age"] >= 60
        with pytest.raises(ServiceError) as no_cache:
            WuxingClient(url).config(NS)
        assert no_cache.value.status == 503
    finally:
        server.shutdown()
        server.server_close()
