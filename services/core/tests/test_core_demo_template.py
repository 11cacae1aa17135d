"""demo_template: the access-log report of core, its JSON twin, and its bounds.

The mix test runs core as a real service (gunicorn, two workers writing one acc.log) with
a slow stand-in for wuxing, makes a known mix of calls and holds the JSON twin to exactly
that mix; the browser test loads the page in Debian's chromium. The bound tests write a
fake acc.log larger than the limit and check only its tail is counted.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from playwright.sync_api import expect, sync_playwright

from butterfly_common.app import create_app
from butterfly_common.logs import access_line
from butterfly_common.request import Request
from butterfly_common.settings import load_settings
from butterfly_common.testing import ButterflyService, RedisServer, wait_until
from butterfly_core.handlers.demo_template.accesslog import MAX_LINE, read_report

CHROMIUM = "/usr/bin/chromium"
SLOW_S = 0.25  # the wuxing stand-in's delay: /demo_inspection/status is the slow route
MB = 1024 * 1024
MARKUP = "/demo_api/<script>alert(1)</script>"  # a 404 whose path the page must escape


class SlowWuxing:
    """Answers every call after SLOW_S with ``ERR_INSTANCE_IS_NOT_EXIST`` (no such
    inspection): core's /demo_inspection/status becomes a slow, refused route."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                time.sleep(SLOW_S)
                body = json.dumps({"stat": "ERR_INSTANCE_IS_NOT_EXIST"}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def core() -> Iterator[ButterflyService]:
    wuxing = SlowWuxing()
    with RedisServer() as redis_server, ButterflyService("core", {
            "BUTTERFLY_REDIS_URL": redis_server.url, "BUTTERFLY_WUXING_URL": wuxing.url,
            "BUTTERFLY_WORKERS": "2", "BUTTERFLY_THREADS": "4"}) as svc:
        yield svc
    wuxing.close()


def _route(data: dict[str, Any], route: str) -> dict[str, Any]:
    rows = [row for row in data["slowest"] if row["route"] == route]
    return rows[0] if rows else {"count": 0}


def _stats(url: str, **params: Any) -> dict[str, Any]:
    reply = requests.get(f"{url}/demo_template/stats", params={"top": 50, **params},
                         timeout=10)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["stat"] == "OK"
    return body["data"]


@pytest.fixture(scope="module")
def mix(core: ButterflyService) -> dict[str, Any]:
    """5 OK calls, 3 refused for a missing parameter, 2 slow refused ones, 1 unknown
    path; then the JSON twin once it sees all 11 (acc.log is written in batches)."""
    for _ in range(5):
        assert requests.get(f"{core.url}/demo_api/hello", params={"str_info": "hi"},
                            timeout=10).status_code == 200
    for _ in range(3):
        assert requests.get(f"{core.url}/demo_api/hello", timeout=10).status_code == 400
    for _ in range(2):
        reply = requests.get(f"{core.url}/demo_inspection/status", params={"target": "t1"},
                             timeout=10)
        assert reply.json()["stat"] == "ERR_INSTANCE_IS_NOT_EXIST"
    assert requests.get(core.url + MARKUP, timeout=10).status_code == 404

    def complete() -> dict[str, Any] | None:
        data = _stats(core.url)
        seen = (_route(data, "/demo_api/hello")["count"],
                _route(data, "/demo_inspection/status")["count"], _route(data, MARKUP)["count"])
        return data if seen == (8, 2, 1) else None

    return wait_until(complete, 15, 0.1, "the 11 calls in acc.log")


def test_the_json_twin_counts_exactly_the_mix(mix: dict[str, Any]) -> None:
    own = _route(mix, "/demo_template/stats")["count"]  # earlier polls of this very route
    stats = {row["stat"]: row["count"] for row in mix["by_stat"]}
    assert stats == {"OK": 5 + own, "ERR_BAD_PARAMS": 3, "ERR_INSTANCE_IS_NOT_EXIST": 2,
                     "ERR_NOT_FOUND": 1}
    assert mix["total"] == 11 + own
    assert sum(m["count"] for m in mix["per_minute"]) == mix["total"]
    assert len(mix["per_minute"]) == 60 == mix["window"]["minutes"]
    slowest = mix["slowest"][0]
    assert slowest["route"] == "/demo_inspection/status" and slowest["count"] == 2
    assert slowest["avg_ms"] >= SLOW_S * 1000 and slowest["max_ms"] >= slowest["avg_ms"]
    hello = _route(mix, "/demo_api/hello")
    assert hello["count"] == 8 and hello["avg_ms"] < SLOW_S * 1000
    assert mix["routes"] == (4 if own else 3)
    assert mix["read"]["skipped"] == 0 and mix["read"]["truncated"] is False
    assert mix["read"]["files"] == 1 and mix["read"]["outside_window"] == 0


def test_bad_params_are_refused_with_400(core: ButterflyService, mix: dict[str, Any]) -> None:
    for route in ("stats", "report"):
        for query, word in (({"minutes": 0}, "minutes"), ({"minutes": 1441}, "minutes"),
                            ({"max_mb": 33}, "max_mb"), ({"top": "many"}, "top"),
                            ({"max_mb": "9" * 30}, "max_mb"), ({"since": 1}, "since")):
            reply = requests.get(f"{core.url}/demo_template/{route}", params=query,
                                 timeout=10)
            assert reply.status_code == 400, (route, query, reply.status_code)
            assert reply.json() == {"stat": "ERR_BAD_PARAMS"}
            assert word in reply.headers["x-reason"]


def test_the_page_in_chromium(core: ButterflyService, mix: dict[str, Any],
                              tmp_path: Path) -> None:
    problems: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 900, "height": 900})
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}"))
            page.on("pageerror", lambda e: problems.append(f"pageerror: {e}"))
            page.on("dialog", lambda d: (problems.append(f"dialog: {d.message}"),
                                         d.dismiss()))
            page.on("request", lambda r: r.url.startswith(core.url) or problems.append(
                f"fetched from elsewhere: {r.url}"))
            # the refusals are counted as the twin counts them (the other tests add some)
            before = {row["stat"]: row["count"] for row in _stats(core.url)["by_stat"]}
            reply = page.goto(f"{core.url}/demo_template/report?minutes=30&top=5")
            assert reply is not None and reply.status == 200
            assert reply.headers["content-type"] == "text/html; charset=utf-8"
            assert "default-src 'none'" in reply.headers["content-security-policy"]
            for stat in ("ERR_BAD_PARAMS", "ERR_INSTANCE_IS_NOT_EXIST", "ERR_NOT_FOUND"):
                row = page.locator("#by-stat tbody tr", has_text=stat)
                expect(row.locator("td").nth(1)).to_have_text(str(before[stat]))
            assert before["ERR_INSTANCE_IS_NOT_EXIST"] == 2 and before["ERR_NOT_FOUND"] == 1
            first = page.locator("#slowest tbody tr").first
            expect(first.locator("td").nth(0)).to_have_text("/demo_inspection/status")
            expect(first.locator("td").nth(1)).to_have_text("2")
            hello = page.locator("#slowest tbody tr", has_text="/demo_api/hello")
            expect(hello.locator("td").nth(1)).to_have_text("8")
            # the markup in a logged path is shown as text, never run
            expect(page.locator("#slowest td.route", has_text=MARKUP)).to_have_count(1)
            chart = page.locator("svg#per-minute")
            expect(chart).to_be_visible()
            expect(chart.locator("title").first).to_have_text(
                "Requests per minute, last 30 minutes")
            expect(chart.locator("text", has_text="requests / min")).to_have_count(1)
            assert chart.locator("rect.bar").count() >= 1
            total = int(page.locator("#total b").inner_text())
            assert total >= 11
            shot = tmp_path / "demo_template.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000
            if os.environ.get("DEMO_TEMPLATE_SHOT"):  # to look at it by hand
                Path(os.environ["DEMO_TEMPLATE_SHOT"]).write_bytes(shot.read_bytes())
        finally:
            browser.close()
    assert not problems, problems


# -- the bounds, on fake logs -----------------------------------------------------------

def _line(second: float, route: str, stat: str = "OK", cost: float = 0.001) -> bytes:
    """One access line as the framework writes it (logs.access_line after the prefix)."""
    req = Request("0123456789ABCDEF", ip="10.0.0.1", method="GET", funcname=route)
    text = access_line(req, stat)
    cost_field = next(f for f in text.split("\t") if f.startswith("cost:"))
    text = text.replace(cost_field, f"cost:{cost:.6f}")
    date = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))
    return f"{date}\t4242\taccess:0\t{text}\n".encode()


MALFORMED = [b"garbage\n", b"\xff\xfe\x00binary\tjunk\n",
             b"2026-01-01 00:00:00\t1\taccess:0\tip\tid\tGET\t/a\tcost:abc\tstat:OK\n",
             b"2026-13-01 bad date\t1\taccess:0\tip\tid\tGET\t/a\tcost:0.1\tstat:OK\n",
             b"2026-01-01 00:00:00\t1\taccess:0\tip\tid\tGET\t/a\tcost:-1\tstat:OK\n",
             b"2026-01-01 00:00:00\t1\taccess:0\tip\tid\tGET\t/a\tcost:nan\tstat:OK\n",
             b"2026-01-01 00:00:00\t1\taccess:0\n",
             b"x" * (MAX_LINE * 2) + b"\n"]


def _big_log(path: Path, now: float, head_bytes: int, tail_lines: int) -> tuple[int, bytes]:
    """``head_bytes`` of /fake/head lines, then ``tail_lines`` /fake/tail lines with the
    MALFORMED ones among them; returns (head lines written, one head line)."""
    head = _line(now - 20, "/fake/head")
    heads = head_bytes // len(head)
    tail = _line(now - 10, "/fake/tail", "ERR_X", 0.5)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as out:
        for _ in range(heads // 1000):
            out.write(head * 1000)
        out.write(head * (heads % 1000))
        for i in range(tail_lines):
            if i % 50 == 0 and i // 50 < len(MALFORMED):
                out.write(MALFORMED[i // 50])
            out.write(tail)
    return heads, head


def test_only_the_newest_max_bytes_are_read(tmp_path: Path) -> None:
    now = time.time()
    path = tmp_path / "acc.log"
    heads, head = _big_log(path, now, 3 * MB, 1000)
    tail_bytes = path.stat().st_size - heads * len(head)
    assert path.stat().st_size > 3 * MB

    report = read_report(path, minutes=5, max_bytes=MB, now=now)
    data = report.as_dict(10)
    routes = {row["route"]: row for row in data["slowest"]}
    assert routes["/fake/tail"]["count"] == 1000 and routes["/fake/tail"]["avg_ms"] == 500.0
    # the whole head lines inside the newest MB: a cut first line is skipped, not parsed
    assert routes["/fake/head"]["count"] == (MB - tail_bytes) // len(head) < heads
    assert data["read"] == {"files": 1, "bytes": MB, "truncated": True,
                            "skipped": len(MALFORMED), "outside_window": 0,
                            "lines": 1000 + len(MALFORMED) + routes["/fake/head"]["count"]}
    assert data["total"] == 1000 + routes["/fake/head"]["count"]
    assert {row["stat"]: row["count"] for row in data["by_stat"]} == {
        "ERR_X": 1000, "OK": routes["/fake/head"]["count"]}

    whole = read_report(path, minutes=5, max_bytes=4 * MB, now=now).as_dict(10)
    assert whole["total"] == 1000 + heads and whole["read"]["truncated"] is False


def test_the_window_and_the_rotated_file(tmp_path: Path) -> None:
    now = time.time()
    path = tmp_path / "acc.log"
    older = _line(now - 3 * 3600, "/old")
    rotated = b"".join([older * 100, _line(now - 50, "/rotated") * 7])
    path.with_name("acc.log.1").write_bytes(rotated)
    path.write_bytes(_line(now - 5, "/new") * 4)
    data = read_report(path, minutes=60, max_bytes=MB, now=now).as_dict(10)
    counts = {row["route"]: row["count"] for row in data["slowest"]}
    assert counts == {"/rotated": 7, "/new": 4}
    assert data["read"]["outside_window"] == 100 and data["read"]["files"] == 2
    assert data["read"]["truncated"] is False  # the window began inside what was read

    # the bound shared by both files: acc.log whole, then acc.log.1's newest bytes only
    budget = path.stat().st_size + 3 * len(_line(now - 50, "/rotated"))
    cut = read_report(path, minutes=60, max_bytes=budget, now=now).as_dict(10)
    assert {row["route"]: row["count"] for row in cut["slowest"]} == {"/rotated": 3,
                                                                       "/new": 4}
    assert cut["read"]["truncated"] is True and cut["read"]["bytes"] == budget


def test_the_service_reads_a_big_log_partially(tmp_path: Path) -> None:
    """Through the framework: a fake acc.log of 2.5 MB in the service's log dir, read with
    max_mb=1 (only its tail) and max_mb=3 (all of it)."""
    now = time.time()
    heads, _ = _big_log(tmp_path / "log" / "core" / "acc.log", now, int(2.5 * MB), 500)
    settings = load_settings({"BUTTERFLY_LOG_DIR": str(tmp_path / "log"),
                              "BUTTERFLY_DATA_DIR": str(tmp_path / "data"),
                              "BUTTERFLY_REDIS_URL": "redis://127.0.0.1:9/0"})
    client = create_app("core", settings).test_client()
    part = client.get("/demo_template/stats?max_mb=1&minutes=10").get_json()["data"]
    routes = {row["route"]: row["count"] for row in part["slowest"]}
    assert routes["/fake/tail"] == 500 and 0 < routes["/fake/head"] < heads
    assert part["read"]["truncated"] is True and part["read"]["bytes"] == MB
    page = client.get("/demo_template/report?max_mb=1&minutes=10")
    assert page.status_code == 200 and b'id="truncated"' in page.data
    assert f"<b>{part['total']}</b>".encode() in page.data
    whole = client.get("/demo_template/stats?max_mb=3&minutes=10").get_json()["data"]
    counts = {row["route"]: row["count"] for row in whole["slowest"]}
    assert counts["/fake/head"] == heads and whole["read"]["truncated"] is False


def test_no_file_to_read_when_logs_go_to_stdout(tmp_path: Path) -> None:
    settings = load_settings({"BUTTERFLY_LOG_DIR": "-",
                              "BUTTERFLY_DATA_DIR": str(tmp_path / "data"),
                              "BUTTERFLY_REDIS_URL": "redis://127.0.0.1:9/0"})
    client = create_app("core", settings).test_client()
    for route in ("stats", "report"):
        reply = client.get(f"/demo_template/{route}")
        assert reply.status_code == 409
        assert reply.get_json() == {"stat": "ERR_NO_ACCESS_LOG"}
        assert "BUTTERFLY_LOG_DIR=-" in reply.headers["x-reason"]
