"""The console in a real browser: Playwright driving Debian's chromium against a real fleet.

The fleet is real processes (``butterfly serve``: canghai, core consuming its topics,
baichuan, ruqi) on a private redis-server. Every page is screenshotted into
``var/screenshots/``; every test fails on a browser console error or an alert dialog (an
XSS payload that ran would open one).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
from canghai_helpers import ADMIN_TOKEN, SECRET
from playwright.sync_api import Browser, Page, expect, sync_playwright

from butterfly_common.mq import Broker
from butterfly_common.redis_client import make_redis
from butterfly_common.testing import ButterflyService, RedisServer, wait_until

ROOT = Path(__file__).resolve().parents[3]
SHOTS = ROOT / "var" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
TOPIC = "/demo_api/hello"
PARKED = "/demo_api/parked"  # a topic nobody serves: messages stay queued
LIMITED = "/demo_api/limited"  # nobody serves it either: the limits test's topic
BULKED = "/demo_api/bulked"  # nor this one: the bulk-action test's dead letters
PARTED = "/demo_api/parted"  # nor this one: the bulk-in-parts test's
ADMIN_PW = "admin-password-1"
VIEWER_PW = "viewer-password-1"
XSS = "<script>alert(1)</script><img src=x onerror=alert(2)>"
WAIT_MS = 45_000


class Fleet:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.redis = RedisServer()
        self.procs: dict[str, ButterflyService] = {}

    def env(self) -> dict[str, str]:
        return {"BUTTERFLY_REDIS_URL": self.redis.url, "BUTTERFLY_ADMIN_TOKEN": ADMIN_TOKEN,
                "BUTTERFLY_SECRET_KEY": SECRET, "BUTTERFLY_WORKERS": "1",
                "BUTTERFLY_THREADS": "4"}

    def start(self, name: str, **env: str) -> ButterflyService:
        proc = ButterflyService(name, {**self.env(), **env})
        self.procs[name] = proc.start(60)
        return proc

    def stop(self) -> None:
        for proc in reversed(list(self.procs.values())):
            proc.stop()
        self.redis.stop()


def _failed_message(broker: Broker, data: dict, error: str) -> str:
    """A dead letter, as a consumer that gave up would leave it."""
    msg_id = broker.publish(TOPIC, data, force=True).msg_id
    (msg,) = broker.claim(TOPIC, "crashed-worker", 1)
    assert msg.id == msg_id
    broker.fail(msg, error, None, 0.5, retry=False)
    return msg_id


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("fleet")
    f = Fleet(tmp)
    f.redis.start()
    broker = Broker(make_redis(f.redis.url))
    try:
        # dead letters made before core starts, so nobody consumes them first
        failed = _failed_message(broker, {"str_info": "retry me"}, "ConnectionError: down")
        xss_failed = _failed_message(broker, {"str_info": XSS}, f"ValueError: {XSS}")
        with ThreadPoolExecutor(5) as pool:  # side by side: each start waits on its port
            starts = {name: pool.submit(f.start, name, **env) for name, env in (
                ("baichuan", {}), ("ruqi", {}), ("core", {"BUTTERFLY_CONSUME": "1"}),
                # canghai calls them as the signed-in user (X-Username from a trusted peer)
                ("wuxing", {"BUTTERFLY_TRUSTED_PROXIES": "127.0.0.1"}),
                ("xingqiao", {"BUTTERFLY_CONSUME": "1",
                              "BUTTERFLY_TRUSTED_PROXIES": "127.0.0.1"}))}
        baichuan, ruqi, core, wuxing, xingqiao = (starts[name].result() for name in (
            "baichuan", "ruqi", "core", "wuxing", "xingqiao"))
        others = {"core": core, "baichuan": baichuan, "ruqi": ruqi, "wuxing": wuxing,
                  "xingqiao": xingqiao}
        fleet_file = tmp / "fleet.toml"
        fleet_file.write_text("".join(f"[service.{name}]\nport = {proc.port}\n\n"
                                      for name, proc in others.items()), encoding="utf-8")
        canghai = ButterflyService("canghai", {
            **f.env(), "BUTTERFLY_RUQI_URL": ruqi.url, "BUTTERFLY_WUXING_URL": wuxing.url,
            "BUTTERFLY_XINGQIAO_URL": xingqiao.url, "CANGHAI_FLEET_FILE": str(fleet_file),
            "CANGHAI_ADMIN_PASSWORD": ADMIN_PW, "CANGHAI_SAMPLE_SECONDS": "1",
            # bulk actions in small parts: a few dead letters take several
            "CANGHAI_BULK_STEP": "4", "CANGHAI_BULK_PART_STEPS": "1",
            "CANGHAI_COOKIE_SECURE": "0",  # plain http on 127.0.0.1
            # the reqid search reads the other services' logs (one host, one dir each)
            "CANGHAI_LOG_DIRS": os.pathsep.join(str(proc.workdir / "log")
                                                for proc in others.values())})
        fleet_file.write_text(fleet_file.read_text() + f"[service.canghai]\nport = "
                              f"{canghai.port}\n", encoding="utf-8")
        f.procs["canghai"] = canghai.start(60)
        user = subprocess.run(  # the CLI adds the viewer, in canghai's database
            [sys.executable, "-m", "butterfly_common.cli", "user", "add", "vic", "--role",
             "viewer", "--password-stdin"], input=VIEWER_PW + "\n", capture_output=True,
            text=True, timeout=60, check=False, cwd=canghai.workdir,
            env={**canghai.env})
        assert user.returncode == 0, user.stderr
        yield {"url": canghai.url, "broker": broker, "failed": failed,
               "xss_failed": xss_failed, "procs": f.procs, "wuxing": wuxing.url,
               "xingqiao": xingqiao.url}
    finally:
        f.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


class Watched:
    """A page whose console errors, page errors and dialogs are collected."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.problems: list[str] = []
        page.on("console", lambda m: m.type == "error" and self.problems.append(
            f"console: {m.text}"))
        page.on("pageerror", lambda e: self.problems.append(f"pageerror: {e}"))
        page.on("dialog", self._dialog)

    def _dialog(self, dialog: Any) -> None:
        if dialog.type == "confirm":  # our own data-confirm prompts
            dialog.accept()
        else:
            self.problems.append(f"dialog {dialog.type}: {dialog.message}")
            dialog.dismiss()


def _session(browser: Browser, base: str, user: str, password: str,
             viewport: dict | None = None) -> Watched:
    ctx = browser.new_context(base_url=base, viewport=viewport or {"width": 1280,
                                                                   "height": 860})
    ctx.set_default_timeout(WAIT_MS)
    w = Watched(ctx.new_page())
    w.page.goto("/console/lang/en?next=/console/login")
    w.page.fill("input[name=username]", user)
    w.page.fill("input[name=password]", password)
    w.page.click("button[type=submit]")
    expect(w.page).to_have_url(re.compile(r"/console/$"))
    return w


@pytest.fixture(scope="module")
def admin(fleet: dict, browser: Browser) -> Iterator[Watched]:
    w = _session(browser, fleet["url"], "admin", ADMIN_PW)
    yield w
    w.page.context.close()


@pytest.fixture(autouse=True)
def no_browser_problems(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "admin" in request.fixturenames:
        w: Watched = request.getfixturevalue("admin")
        problems, w.problems[:] = list(w.problems), []
        assert not problems, problems


def shot(page: Page, name: str) -> None:
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_sign_in_page_and_overview(fleet: dict, browser: Browser, admin: Watched) -> None:
    ctx = browser.new_context(base_url=fleet["url"])
    w = Watched(ctx.new_page())
    w.page.goto("/console/queues")
    expect(w.page).to_have_url(re.compile(r"/console/login"))
    w.page.fill("input[name=username]", "admin")
    w.page.fill("input[name=password]", "wrong-password")
    w.page.click("button[type=submit]")
    expect(w.page.locator(".alert")).to_be_visible()
    shot(w.page, "login")
    assert not w.problems, w.problems
    ctx.close()

    page = admin.page
    page.goto("/console/")
    rows = page.locator("#overview-live table tbody tr")
    expect(rows).to_have_count(6)
    expect(page.locator("#overview-live .badge-ok")).to_have_count(6)
    # the sampler feeds the charts: wait for a drawn chart
    expect(page.locator("#chart-depth .uplot")).to_have_count(1)
    expect(page.locator("#chart-traffic .uplot")).to_have_count(1)
    shot(page, "overview")


def test_counts_change_without_reload(fleet: dict, admin: Watched) -> None:
    page = admin.page
    broker: Broker = fleet["broker"]
    broker.publish(PARKED, {"n": 0}, force=True)
    page.goto("/console/queues")
    cell = page.locator(f'tr[data-topic="{PARKED}"] a[data-count="queued"]')
    before = int(cell.inner_text())
    page.evaluate("window.__sameDocument = true")
    for n in range(5):
        broker.publish(PARKED, {"n": n + 1}, force=True)
    expect(cell).to_have_text(str(before + 5))
    assert page.evaluate("window.__sameDocument === true")  # no reload happened
    shot(page, "queues")
    page.goto(f"/console/messages?topic={PARKED}&status=queued")
    strip = page.locator('#message-counts [data-count="queued"]')
    expect(strip).to_contain_text(str(before + 5))
    broker.publish(PARKED, {"n": "one more"}, force=True)
    expect(strip).to_contain_text(str(before + 6))


def test_failed_message_requeued_finishes(fleet: dict, admin: Watched) -> None:
    page = admin.page
    page.goto(f"/console/messages?topic={TOPIC}&status=failed")
    shot(page, "messages-failed")
    page.click(f'a[href="/console/message?id={fleet["failed"]}"]')
    expect(page.locator("[data-status]")).to_have_attribute("data-status", "failed")
    expect(page.locator('[data-field="error"]')).to_have_text("ConnectionError: down")
    expect(page.locator('[data-field="error-kind"]')).to_have_text("exception")
    shot(page, "message-failed")
    page.click("button:has-text('Requeue')")

    def finished() -> bool:
        page.reload()
        return page.locator("[data-status]").get_attribute("data-status") == "finished"

    wait_until(finished, 45, 0.5, "the requeued message finished")
    expect(page.locator('[data-field="result"]')).to_contain_text('"str_info": "retry me"')
    expect(page.locator('[data-field="error-kind"]')).to_have_count(0)  # the claim cleared it
    shot(page, "message-finished")


def test_xss_payloads_render_as_text(fleet: dict, admin: Watched) -> None:
    page = admin.page
    broker: Broker = fleet["broker"]
    msg_id = broker.publish(TOPIC, {"str_info": XSS}).msg_id
    wait_until(lambda: broker.get(msg_id).status == "finished", 45, 0.1, "xss message done")
    page.goto(f"/console/message?id={msg_id}")
    expect(page.locator('[data-field="data"]')).to_contain_text(XSS)
    expect(page.locator('[data-field="result"]')).to_contain_text(XSS)
    page.goto(f"/console/message?id={fleet['xss_failed']}")
    expect(page.locator('[data-field="error"]')).to_have_text(f"ValueError: {XSS}")
    page.goto(f"/console/messages?topic={TOPIC}&status=finished")
    expect(page.locator('td[data-field="data"]', has_text="<script>").first).to_be_visible()
    assert page.locator("main img").count() == 0  # the <img onerror> never became an element
    page.wait_for_timeout(300)  # give a smuggled handler time to fire (it must not)
    assert not admin.problems


def test_post_without_csrf_is_refused(fleet: dict, admin: Watched) -> None:
    page = admin.page
    page.goto("/console/queues")
    r = page.request.post("/console/messages/requeue_all", form={"topic": TOPIC})
    assert r.status == 403
    r = page.request.post("/canghai/msg_delete", data={"msg_id": fleet["failed"]})
    assert r.status == 403 and "CSRF" in r.headers["x-reason"]


def test_scheduler_job_from_the_form(fleet: dict, admin: Watched) -> None:
    page = admin.page
    page.goto("/console/scheduler/new")
    page.fill("input[name=job_id]", "tick")
    page.fill("input[name=job_name]", "tick every second")
    page.select_option("select[name=job_trigger]", "interval")
    check = page.locator("#rule-check [data-rule-ok]")
    page.locator("input[name=rule]").press_sequentially("every second")
    expect(check).to_have_attribute("data-rule-ok", "0")  # checked as you type
    page.fill("input[name=rule]", "")
    page.locator("input[name=rule]").press_sequentially("1s")
    expect(check).to_have_attribute("data-rule-ok", "1")
    expect(page.locator("#rule-check ol.fires li")).to_have_count(5)
    page.fill("input[name=cmd]", TOPIC + '#{"str_info": "tick"}')
    page.select_option("select[name=overlap]", "buffer_one")
    page.fill("input[name=jitter]", "0.5")
    shot(page, "scheduler-new")
    page.click("form.form button[type=submit]")
    expect(page).to_have_url(re.compile(r"/console/scheduler/job\?id=tick"))
    history = page.locator("#job-history [data-history-total]")

    def grown() -> bool:
        return history.count() == 1 and int(history.get_attribute("data-history-total")) >= 2

    wait_until(grown, 60, 0.5, "the job's history grew without a reload")
    expect(page.locator("#chart-lateness .uplot")).to_have_count(1)
    late = page.request.get("/console/scheduler/lateness.json?id=tick").json()
    assert len(late["t"]) >= 2 and all(v is not None and v >= 0 for v in late["late_ok"])
    shot(page, "scheduler-job")
    page.goto("/console/scheduler/")
    expect(page.locator("td", has_text="tick every second")).to_be_visible()
    shot(page, "scheduler")
    page.goto("/console/scheduler/job?id=tick")
    expect(page.locator("[data-field=next-runs] li")).to_have_count(5)
    expect(page.locator("[data-field=overlap]")).to_have_text("buffer_one")
    expect(page.locator("[data-field=jitter]")).to_have_text("0.5")
    page.fill("input[name=note]", "upstream maintenance")
    page.click("button[value=pause]")
    expect(page.locator("button[value=resume]")).to_be_visible()
    # the note, who and when: on the job and in the list
    expect(page.locator("[data-field=pause-note]")).to_have_text("upstream maintenance")
    expect(page.locator("[data-field=paused-by]")).not_to_have_text("-")
    page.goto("/console/scheduler/")
    expect(page.locator("[data-field=pause-note]")).to_contain_text("upstream maintenance")


def _utc(ts: float) -> str:
    """A time as the backfill form takes it, with an explicit offset (any ruqi zone)."""
    return time.strftime("%Y-%m-%d %H:%M:%S+0000", time.gmtime(ts))


def test_scheduler_options_checked_as_you_type(fleet: dict, admin: Watched) -> None:
    """Every option is checked by ruqi while it is typed, with ruqi's own refusal text;
    the saved job's page shows every option's value."""
    page = admin.page
    page.goto("/console/scheduler/new")
    page.fill("input[name=job_id]", "minutely")
    page.fill("input[name=job_name]", "backfilled every minute")
    page.select_option("#job-form select[name=job_trigger]", "interval")
    page.fill("input[name=rule]", "1m")
    check = page.locator("#rule-check [data-rule-ok]")
    expect(check).to_have_attribute("data-rule-ok", "1")
    for name, bad, reason in (("jitter", "4000", "jitter must be 0..3600"),
                              ("jitter", "60", "shorter than the time between fires"),
                              ("catchup_window", "604801", "catchup_window must be 0..604800"),
                              ("pause_on_failure", "1001", "pause_on_failure must be 0..1000"),
                              ("start_at", "tomorrow", "start_at 'tomorrow'"),
                              ("timezone", "Mars/Olympus", "Mars/Olympus")):
        page.locator(f"#job-form input[name={name}]").fill(bad)
        expect(check).to_have_attribute("data-rule-ok", "0")
        expect(page.locator("#rule-check .alert")).to_contain_text(reason)
        if name == "start_at":
            shot(page, "scheduler-options-refused")
        page.locator(f"#job-form input[name={name}]").fill("")
        expect(check).to_have_attribute("data-rule-ok", "1")
    page.fill("input[name=start_at]", "2031-01-02 00:00:00")
    page.fill("input[name=end_at]", "2031-01-01 00:00:00")
    expect(page.locator("#rule-check .alert")).to_contain_text("end_at must be later than")
    page.fill("input[name=start_at]", "")
    page.fill("input[name=end_at]", "")
    page.fill("input[name=jitter]", "20")
    page.fill("input[name=catchup_window]", "600")
    page.fill("input[name=pause_on_failure]", "3")
    expect(page.locator("#rule-check")).to_contain_text("Rule and options are valid")
    expect(page.locator("#rule-check")).to_contain_text("jitter applied")
    expect(page.locator("#rule-check ol.fires li")).to_have_count(5)
    page.fill("input[name=cmd]", TOPIC + '#{"str_info": "minutely"}')
    shot(page, "scheduler-options")
    page.click("#job-form button[type=submit]")
    expect(page).to_have_url(re.compile(r"/console/scheduler/job\?id=minutely"))
    for field, value in (("jitter", "20.0"), ("catchup-window", "600"),
                         ("pause-on-failure", "3"), ("start-at", "-"), ("end-at", "-")):
        expect(page.locator(f"[data-field={field}]")).to_have_text(value)
    expect(page.locator("[data-field=next-runs] li")).to_have_count(5)
    # the edit form is checked too, from the saved values (the job id gives the jitter)
    expect(page.locator("#rule-check")).to_contain_text("if saved now · jitter applied")


def test_scheduler_backfill_preview_then_run(fleet: dict, admin: Watched) -> None:
    """The job page previews a backfill (slots, which already ran), runs it (audited), and
    the history shows the [backfill] rows; a refusal is shown in the form."""
    page = admin.page
    page.goto("/console/scheduler/job?id=minutely")
    now = time.time()
    page.fill("#backfill-form input[name=start]", _utc(now - 600))
    page.fill("#backfill-form input[name=end]", _utc(now + 3600))
    page.click("#backfill-form button[value=preview]")
    result = page.locator("#backfill-result")
    expect(result.locator(".alert")).to_contain_text("end is in the future")
    page.fill("#backfill-form input[name=start]", _utc(now - 86400 * 8))
    page.fill("#backfill-form input[name=end]", _utc(now - 60))
    page.click("#backfill-form button[value=preview]")
    expect(result.locator(".alert")).to_contain_text("more than 10000 slots")
    page.fill("#backfill-form input[name=start]", _utc(now - 330))
    page.select_option("#backfill-form select[name=overlap]", "allow")
    page.click("#backfill-form button[value=preview]")
    preview = result.locator("[data-backfill-mode=preview]")
    expect(preview).to_contain_text("0 already run")
    n = int(preview.get_attribute("data-slots"))
    assert 4 <= n <= 5, n  # a minute apart in 4.5 minutes
    expect(result.locator("[data-field=backfill-slots] li")).to_have_count(n)
    assert result.locator("[data-done]").count() == 0
    shot(page, "scheduler-backfill-preview")
    page.click("#backfill-form button[value=run]")  # confirmed by the Watched page
    expect(result.locator("[data-backfill-mode=run]")).to_contain_text(f"{n} slots queued")
    history = page.locator("#job-history td", has_text="[backfill]")
    wait_until(lambda: history.count() >= n, 60, 0.5, "the backfill's history rows")
    page.click("#backfill-form button[value=preview]")  # idempotent: they all ran
    expect(result.locator("[data-backfill-mode=preview]")).to_have_attribute(
        "data-already-run", str(n))
    expect(result.locator("[data-done]")).to_have_count(n)
    shot(page, "scheduler-backfill")
    page.goto("/console/audit?action=job_backfill")
    expect(page.locator("main td", has_text="minutely").first).to_be_visible()


def test_charts_count_processed_messages(fleet: dict, admin: Watched) -> None:
    """The sampler turned core's /metrics (QUEUE calls) into per-minute buckets."""
    page = admin.page

    def processed() -> float:
        series = page.request.get("/console/series.json?range=hour").json()
        return sum(series["processed"])

    wait_until(lambda: processed() >= 2, 60, 0.5, "processed messages in the chart data")
    page.goto("/console/")
    expect(page.locator("#chart-traffic .uplot")).to_have_count(1)
    shot(page, "overview")


def test_purge_confirm_shows_how_many(fleet: dict, admin: Watched) -> None:
    page = admin.page
    broker: Broker = fleet["broker"]
    queued = broker.counts(PARKED)["queued"]
    page.goto(f"/console/messages?topic={PARKED}&status=queued")
    page.click("a.button.danger")
    expect(page.locator("[data-purge-count]")).to_have_attribute("data-purge-count",
                                                                 str(queued))
    shot(page, "purge-confirm")
    page.click("button.danger")
    expect(page).to_have_url(re.compile(r"/console/messages\?"))
    assert broker.counts(PARKED)["queued"] == 0


def test_admin_sets_topic_limits_in_the_form(fleet: dict, admin: Watched) -> None:
    """An admin limits a topic from its messages page: a bad value is said on the page, the
    saved limits show in the panel and as a marker on the queues list, then clear."""
    page = admin.page
    broker: Broker = fleet["broker"]
    broker.publish(LIMITED, {"str_info": "held"}, force=True)
    page.goto(f"/console/messages?topic={LIMITED}&status=queued")
    panel = page.locator("#limits")
    expect(panel.locator('[data-field="no_limits"]')).to_have_text("No limits")
    form = panel.locator("form.limits-form")
    form.locator("input[name=max_running]").fill("0")
    form.locator("button[value=set]").click()
    expect(panel.locator('[data-field="limits-error"]')).to_have_text(
        "Max running: must be between 1 and 1000000")
    assert not broker.limits(LIMITED).limited
    expect(form.locator("input[name=max_running]")).to_have_value("0")  # kept to fix
    shot(page, "messages-limits-error")
    # the refused form comes back as a 400 page, which chromium logs: expected here
    assert admin.problems and all("status of 400" in p for p in admin.problems), admin.problems
    admin.problems.clear()
    form.locator("input[name=max_running]").fill("3")
    form.locator("input[name=rate]").fill("20")
    form.locator("input[name=rate_window]").fill("60")
    form.locator("button[value=set]").click()
    expect(page).to_have_url(re.compile(r"done=limits_saved"))
    expect(panel.locator("[data-done]")).to_have_text("Limits saved")
    expect(panel.locator('[data-field="max_running"]')).to_have_text("3 (running now 0)")
    expect(panel.locator('[data-field="rate"]')).to_have_text(
        "20 per 60 s (used this window 0)")
    expect(panel.locator('[data-field="set_by"]')).to_contain_text("admin")
    limits = broker.limits(LIMITED)
    assert (limits.max_running, limits.rate, limits.rate_window) == (3, 20, 60.0)
    shot(page, "messages-limits")
    page.goto("/console/queues")
    expect(page.locator(f'[data-limits="{LIMITED}"]')).to_have_text("max 3 · 20/60s")
    shot(page, "queues-limits")
    page.goto(f"/console/messages?topic={LIMITED}&status=queued")
    page.locator("#limits button[value=clear]").click()  # the confirm dialog is accepted
    expect(page.locator('#limits [data-done]')).to_have_text("Limits cleared")
    expect(page.locator('#limits [data-field="no_limits"]')).to_be_visible()
    assert not broker.limits(LIMITED).limited


def test_admin_sets_group_limits_in_the_form(fleet: dict, admin: Watched) -> None:
    """The group caps typed in the limits form land in the topic's limits; the panel shows
    them and the groups' live state."""
    page = admin.page
    broker: Broker = fleet["broker"]
    for group in ("acme", "acme", "beta"):
        broker.publish(LIMITED, {"str_info": "grouped"}, force=True, group=group)
    page.goto(f"/console/messages?topic={LIMITED}&status=queued")
    form = page.locator("#limits form.limits-form")
    form.locator("input[name=group_max_running]").fill("1")
    form.locator("textarea[name=group_limits]").fill("beta=3\nacme=2")
    form.locator("button[value=set]").click()
    expect(page).to_have_url(re.compile(r"done=limits_saved"))
    limits = broker.limits(LIMITED)
    assert (limits.group_max_running, limits.group_limits) == (1, {"acme": 2, "beta": 3})
    panel = page.locator("#limits")
    expect(panel.locator('[data-field="group_max_running"]')).to_have_text("1")
    expect(panel.locator('[data-field="group_limits"]')).to_have_text("acme=2, beta=3")
    expect(panel.locator('[data-field="groups_ready"]')).to_have_text("2")
    expect(form.locator("textarea[name=group_limits]")).to_have_value("acme=2\nbeta=3")
    shot(page, "messages-group-limits")
    page.locator("#limits button[value=clear]").click()
    expect(page.locator('#limits [data-done]')).to_have_text("Limits cleared")
    assert not broker.limits(LIMITED).limited
    broker.purge(LIMITED, "all")


def test_bulk_preview_then_requeue(fleet: dict, admin: Watched) -> None:
    """Dead letters of a topic: the preview counts those whose error matches, the act
    requeues exactly those (after the confirm) and the audit log has the run."""
    page = admin.page
    broker: Broker = fleet["broker"]
    for i, error in enumerate(["TimeoutError: db", "ValueError: bad", "TimeoutError: api"]):
        broker.publish(BULKED, {"i": i}, force=True)
        (msg,) = broker.claim(BULKED, "bulk-test", 1)
        assert broker.fail(msg, error, retry=False) == "failed"
    page.goto(f"/console/messages?topic={BULKED}&status=failed")
    form = page.locator("#bulk form.bulk-form")
    expect(form.locator("select[name=bulk_action]")).to_have_value("requeue")
    expect(form.locator("select[name=bulk_status]")).to_have_value("failed")
    form.locator("input[name=error]").fill("TimeoutError")
    form.locator("button[value=preview]").click()
    preview = page.locator('#bulk [data-field="bulk-preview"]')
    expect(preview).to_contain_text("2 messages match")
    expect(page.locator("#bulk input[name=error]")).to_have_value("TimeoutError")  # kept
    assert broker.counts(BULKED)["failed"] == 3
    shot(page, "messages-bulk-preview")
    page.locator("#bulk button[value=act]").click()  # the confirm dialog is accepted
    expect(page.locator('#bulk [data-field="bulk-done"]')).to_contain_text(
        "requeue: 2 matched, 2 done")
    counts = broker.counts(BULKED)
    assert (counts["failed"], counts["queued"]) == (1, 2)
    shot(page, "messages-bulk-done")
    page.goto("/console/audit?action=bulk")
    row = page.locator("tr", has_text=BULKED).first
    expect(row).to_contain_text('requeue {"error": "TimeoutError", "status": "failed"}')
    expect(row).to_contain_text("acted=2")
    broker.purge(BULKED, "all")


def test_bulk_act_shows_its_progress_part_by_part(fleet: dict, admin: Watched) -> None:
    """30 dead letters, 20 matching, parts of one step of 4 ids: Act runs 8 parts, the
    progress bar and text follow each (seen mid-run: the 5th part is held back until the
    page shows the 4th), and the final count is the preview's."""
    page = admin.page
    broker: Broker = fleet["broker"]
    for i in range(30):
        broker.publish(PARTED, {"i": i}, force=True)
        (msg,) = broker.claim(PARTED, "bulk-test", 1)
        assert broker.fail(msg, "TimeoutError: db" if i % 3 else "ValueError: x",
                           retry=False) == "failed"
    page.goto(f"/console/messages?topic={PARTED}&status=failed")
    form = page.locator("#bulk form.bulk-form")
    form.locator("input[name=error]").fill("TimeoutError")
    form.locator("button[value=preview]").click()
    preview = page.locator('#bulk [data-field="bulk-preview"]')
    expect(preview).to_contain_text("20 messages match (30 scanned in 8 steps)")
    matched = int(preview.get_attribute("data-matched"))
    assert (matched, preview.get_attribute("data-scanned")) == (20, "30")
    # every change of the progress text, as the page made it
    page.evaluate("""() => {
        window.__bulkSeen = [];
        const text = document.querySelector('#bulk [data-field="bulk-progress-text"]');
        const bar = document.querySelector('#bulk [data-field="bulk-bar"]');
        new MutationObserver(() => window.__bulkSeen.push([text.textContent, bar.value]))
            .observe(text, {childList: true, characterData: true, subtree: true});
    }""")
    held: list[Any] = []
    parts: list[str] = []

    def hold_the_fifth(route: Any) -> None:
        parts.append(route.request.post_data or "")
        if len(parts) == 5:
            held.append(route)  # answered below, once the page shows part 4
        else:
            route.continue_()

    page.route("**/console/messages/bulk/part", hold_the_fifth)
    bar = page.locator('#bulk [data-field="bulk-bar"]')
    text = page.locator('#bulk [data-field="bulk-progress-text"]')
    released = False
    try:
        page.locator("#bulk button[value=act]").click()  # the confirm dialog is accepted
        expect(text).to_have_text(re.compile(r"^16 of 30 scanned, \d+ of 20 done \(part 4\)$"))
        expect(page.locator("#bulk button[value=act]")).to_be_disabled()  # while it runs
        assert bar.evaluate("b => [b.value, b.max]") == [16, 30]
        acted = int(re.search(r"(\d+) of 20 done", text.text_content()).group(1))
        assert len(held) == 1 and broker.counts(PARTED)["queued"] == acted > 0  # 4 parts
        shot(page, "messages-bulk-progress")
        held[0].continue_()
        released = True
        done = page.locator('#bulk [data-field="bulk-done"]')
        expect(done).to_contain_text("requeue: 20 matched, 20 done (30 scanned in 8 steps)")
    finally:
        if held and not released:
            held[0].continue_()  # never leave the page's request hanging
        page.unroute("**/console/messages/bulk/part")
    assert int(done.get_attribute("data-acted")) == matched
    assert done.get_attribute("data-parts") == "8" and len(parts) == 8
    # the first part starts the run, each next one carries the cursor the one before answered
    assert re.search(r"(^|&)cursor=(&|$)", parts[0])
    assert all(re.search(r"(^|&)cursor=[A-Za-z0-9_-]{20,}", p) for p in parts[1:])
    seen = page.evaluate("window.__bulkSeen")
    # shown before the first part and after each of the 8 (the last one's text and the
    # final one come in one observer call, the bar full by then)
    shown = [re.fullmatch(r"(\d+) of 30 scanned, (\d+) of 20 done \(part (\d+)\)", t)
             for t, _ in seen]
    assert all(shown), seen
    assert [int(m.group(1)) for m in shown] == [0, 4, 8, 12, 16, 20, 24, 28, 30], seen
    assert [v for _, v in seen][:-1] == [0, 4, 8, 12, 16, 20, 24, 28], seen
    assert [int(m.group(3)) for m in shown] == list(range(9))
    acted_seen = [int(m.group(2)) for m in shown]
    assert acted_seen == sorted(acted_seen) and acted_seen[-1] == 20
    assert bar.evaluate("b => b.value === b.max")
    expect(page.locator("#bulk button[value=act]")).to_be_enabled()
    counts = broker.counts(PARTED)
    assert (counts["failed"], counts["queued"]) == (10, 20)
    # the page's counts and rows follow at once (no reload)
    expect(page.locator('#message-counts [data-count="failed"]')).to_have_text("Failed 10")
    expect(page.locator("#message-rows tr")).to_have_count(10)
    expect(page.locator("#message-rows")).not_to_contain_text("TimeoutError")
    # so do the list's total, its pager and purge count, and the status choice
    expect(page.locator("#message-list h2")).to_contain_text("Total 10")
    expect(page.locator("#message-list a.danger")).to_have_text("Purge (10)")
    expect(page.locator("#message-list .pager")).to_contain_text("1 / 1")
    expect(page.locator('#message-filters select[name=status] option[value="failed"]')
           ).to_have_text("Failed (10)")
    expect(page.locator('#bulk [data-field="bulk-done"]')).to_be_visible()  # still shown
    shot(page, "messages-bulk-parts-done")
    page.goto("/console/audit?action=bulk")
    rows = page.locator("tr", has_text=PARTED)
    expect(rows).to_have_count(8)
    expect(rows.first).to_contain_text("part=8 done")
    expect(rows.last).to_contain_text("part=1")
    broker.purge(PARTED, "all")


def test_bulk_act_without_javascript_is_one_request(fleet: dict, browser: Browser) -> None:
    """Without the script Act posts the form: the whole run in one request, the page with
    the final counts (no progress bar shown)."""
    broker: Broker = fleet["broker"]
    for i in range(9):
        broker.publish(PARTED, {"i": i}, force=True)
        (msg,) = broker.claim(PARTED, "bulk-test", 1)
        broker.fail(msg, "boom", retry=False)
    ctx = browser.new_context(base_url=fleet["url"], java_script_enabled=False)
    ctx.set_default_timeout(WAIT_MS)
    page = ctx.new_page()
    page.goto("/console/lang/en?next=/console/login")
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", ADMIN_PW)
    page.click("button[type=submit]")
    page.goto(f"/console/messages?topic={PARTED}&status=failed")
    page.locator("#bulk select[name=bulk_action]").select_option("delete")
    page.locator("#bulk button[value=act]").click()
    expect(page.locator('#bulk [data-field="bulk-done"]')).to_contain_text(
        "delete: 9 matched, 9 done (9 scanned in 3 steps)")
    expect(page.locator('#bulk [data-field="bulk-progress"]')).to_be_hidden()
    assert broker.counts(PARTED)["failed"] == 0
    ctx.close()


def test_other_pages(fleet: dict, admin: Watched) -> None:
    page = admin.page
    for path, name in (("/console/consumers", "consumers"), ("/console/audit", "audit"),
                       ("/console/users", "users")):
        page.goto(path)
        expect(page.locator("main h1")).to_be_visible()
        shot(page, name)
    page.goto("/console/consumers")
    expect(page.locator("#consumer-rows .badge-ok").first).to_be_visible()
    page.goto("/console/audit")
    for action in ("sign_in", "requeue", "job_add", "purge"):
        expect(page.locator("td", has_text=action).first).to_be_visible()
    page.goto("/console/lang/zh?next=/console/queues")
    expect(page.locator("main h1")).to_contain_text("队列")
    shot(page, "queues-zh")
    page.goto("/console/lang/en?next=/console/queues")


def test_phone_layout(fleet: dict, browser: Browser) -> None:
    w = _session(browser, fleet["url"], "admin", ADMIN_PW, {"width": 390, "height": 844})
    for path, name in (("/console/", "phone-overview"), (f"/console/messages?topic={TOPIC}"
                                                        "&status=finished", "phone-messages")):
        w.page.goto(path)
        expect(w.page.locator("main h1")).to_be_visible()
        width = w.page.evaluate("document.documentElement.scrollWidth")
        assert width <= 400, f"{path} scrolls sideways on a phone ({width}px)"
        shot(w.page, name)
    w.page.keyboard.press("Tab")  # the skip link is the first stop
    assert w.page.evaluate("document.activeElement.className") == "skip"
    assert not w.problems, w.problems
    w.page.context.close()


def test_viewer_sees_no_destructive_buttons(fleet: dict, browser: Browser) -> None:
    w = _session(browser, fleet["url"], "vic", VIEWER_PW)
    page = w.page
    page.goto(f"/console/messages?topic={TOPIC}&status=failed")
    expect(page.locator("main h1")).to_be_visible()
    assert page.locator("main button[name=action], main .danger, "
                        "form[action$=requeue_all], input[name=ids]").count() == 0
    expect(page.locator("#limits")).to_be_visible()  # the limits panel, without its form
    assert page.locator("#bulk, form[action$='/messages/bulk']").count() == 0
    assert page.locator("form[action$='/messages/limits']").count() == 0
    page.goto(f"/console/message?id={fleet['xss_failed']}")
    assert page.locator("main form").count() == 0
    page.goto("/console/scheduler/job?id=tick")
    assert page.locator("button[value=run], button[value=remove], form.form").count() == 0
    assert page.locator("#backfill-form, #rule-check").count() == 0
    shot(page, "viewer-message")
    csrf = page.evaluate("document.querySelector('input[name=csrf_token]').value")
    for path, form in (("/console/message/requeue", {"id": fleet["xss_failed"]}),
                       ("/console/messages/purge", {"topic": TOPIC, "status": "failed"}),
                       ("/console/messages/limits", {"topic": TOPIC, "max_running": "1"}),
                       ("/console/messages/bulk", {"topic": TOPIC, "do": "preview",
                                                   "bulk_action": "requeue",
                                                   "bulk_status": "failed"}),
                       ("/console/scheduler/action", {"job_id": "tick", "action": "run"}),
                       ("/console/scheduler/backfill", {"job_id": "tick", "start": "2020-01-01",
                                                        "end": "2020-01-02", "mode": "run"})):
        r = page.request.post(path, form={**form, "csrf_token": csrf})
        assert r.status == 403, path
    r = requests.post(f"{fleet['url']}/canghai/queue_empty", timeout=10,
                      json={"queue_name": TOPIC, "registry_name": "failed"})
    assert r.status_code == 401
    assert not w.problems, w.problems
    w.page.context.close()


def _wuxing(fleet: dict, path: str, **params: Any) -> dict:
    """A write to wuxing as another client of the fleet would make it (admin token)."""
    r = requests.post(f"{fleet['wuxing']}/wuxing/{path}", json=params, timeout=10,
                      headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert r.status_code == 200, (path, r.status_code, r.headers.get("x-reason"))
    return r.json()


def test_data_browse_edit_and_live_change(fleet: dict, admin: Watched) -> None:
    key = {"namespace": "shop", "section_name": "host", "section_version": "v1"}
    _wuxing(fleet, "section_create", **key)
    _wuxing(fleet, "section_item_add", **key, item_name="i|port", item_default=80,
            item_description="listen port", item_min=1, item_max=65535)
    _wuxing(fleet, "section_item_add", **key, item_name="s|note", item_default="-")
    _wuxing(fleet, "section_enable", **key)
    _wuxing(fleet, "instance_create", namespace="shop", instance_name="web1",
            section_name="host", section_version="v1", items_data={"i|port": 8080})
    page = admin.page
    page.goto("/console/data/")
    page.click('tr[data-section="shop/host/v1"] a:has-text("host")')
    expect(page.locator("main h1")).to_contain_text("host")
    shot(page, "data-section")
    page.click('a:has-text("web1")')
    port = page.locator('tr[data-item="i|port"] [data-field="value"]')
    expect(port).to_have_text("8080")
    # an edit through the console form (CAS on the item's revision) ...
    row = page.locator('tr[data-item="i|port"]')
    row.locator("input[name=item_value]").fill("8081")
    row.locator("button[type=submit]").click()
    expect(port).to_have_text("8081")
    # ... and a change made elsewhere arrives live, without a reload
    page.evaluate("window.__sameDocument = true")
    _wuxing(fleet, "instance_update_item", namespace="shop", instance_name="web1",
            item_name="s|note", item_value=XSS)
    note = page.locator('tr[data-item="s|note"] [data-field="value"]')
    expect(note).to_contain_text("<script>")
    expect(page.locator("#data-changes li[data-change-revision]").first).to_contain_text("s|note")
    assert page.evaluate("window.__sameDocument === true")
    assert page.locator("main img").count() == 0
    shot(page, "data-instance")
    # a stale form (the item changed since the page showed it) is refused, not applied
    _wuxing(fleet, "instance_update_item", namespace="shop", instance_name="web1",
            item_name="i|port", item_value=9000)
    page.evaluate("htmx.config.defaultSwapStyle")  # htmx is there
    form = page.locator('tr[data-item="i|port"] form')
    stale = form.locator("input[name=revision]").get_attribute("value")
    csrf = form.locator("input[name=csrf_token]").get_attribute("value")
    r = page.request.post("/console/data/item", form={
        "csrf_token": csrf, "namespace": "shop", "instance_name": "web1",
        "item_name": "i|port", "item_value": "1", "revision": str(int(stale) - 1)},
        max_redirects=0)
    assert r.status == 302 and "ERR_ITEM_UPDATE_FAILED" in r.headers["location"]
    # the item's history and a rollback
    page.click('tr[data-item="i|port"] a:has-text("i|port")')
    expect(page.locator("main table tbody tr")).to_have_count(3)
    # wuxing recorded the console user, not just canghai's credential
    expect(page.locator("main table tbody tr").nth(1).locator("td").nth(4)).to_have_text("admin")
    page.locator("main table tbody tr").nth(1).locator("button").click()
    expect(page.locator('[data-field="value"]')).to_have_text("8081")
    shot(page, "data-item")


def test_flow_created_in_the_form_turns_finished(fleet: dict, admin: Watched) -> None:
    page = admin.page
    page.goto("/console/flows/new")
    page.select_option("select[name=job_type]", "hello")
    page.fill("textarea[name=job_extra]", '{"str_info": "from the console"}')
    shot(page, "flow-new")
    page.click("form.form button[type=submit]")
    expect(page).to_have_url(re.compile(r"/console/flows/flow\?id=\d+"))
    live = page.locator("#flow-live")
    expect(live).to_have_attribute("data-job-status", "finished")
    graph = page.locator("#flow-graph")
    expect(graph).to_have_attribute("data-graph-version", re.compile(r"^finished-"))
    page.wait_for_function("document.getElementById('flow-graph').complete && "
                           "document.getElementById('flow-graph').naturalWidth > 0")
    svg = page.request.get(graph.get_attribute("src"))
    assert svg.status == 200 and svg.headers["content-type"].startswith("image/svg+xml")
    assert "finished" in svg.text() or "OK" in svg.text()
    expect(page.locator("[data-task-status=finished]").first).to_be_visible()
    expect(page.locator('[data-field="flow-result"]')).to_contain_text("from the console")
    # the plugin's content hash: the version this flow was built from and keeps
    expect(page.locator('[data-field="job-version"]')).to_have_text(
        re.compile(r"^[0-9a-f]{16}$"))
    shot(page, "flow")
    # rerun a task: the flow starts again and ends finished again
    page.locator("form[action='/console/flows/rerun'] button").first.click()
    expect(page.locator("#flow-live")).to_have_attribute("data-job-status", "finished")
    page.goto("/console/flows/?status=finished")
    expect(page.locator("tr[data-flow]").first).to_be_visible()
    shot(page, "flows")
    page.goto("/console/audit")
    for action in ("flow_create", "flow_rerun_task", "data_set", "data_rollback"):
        expect(page.locator("td", has_text=action).first).to_be_visible()


def test_flow_cancel_and_retry(fleet: dict, admin: Watched) -> None:
    """A flow stuck on a topic nobody serves: cancel it, then retry it, from its page."""
    r = requests.post(f"{fleet['xingqiao']}/xingqiao/flow_type_create", timeout=10,
                      headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                      json={"name": "stuck", "tasks": [{"label": "wait", "cmd": PARKED}]})
    assert r.status_code == 200, r.headers.get("x-reason")
    page = admin.page
    page.goto("/console/flows/new")
    page.select_option("select[name=job_type]", "stuck")
    page.click("form.form button[type=submit]")
    expect(page.locator("#flow-live")).to_have_attribute("data-job-status", "started")
    page.click("button[value=cancel]")  # confirms through the data-confirm dialog
    expect(page.locator("#flow-live")).to_have_attribute("data-job-status", "canceled")
    expect(page.locator("[data-task-status=canceled]")).to_have_count(1)
    page.click("button[value=retry]")
    expect(page.locator("#flow-live")).to_have_attribute("data-job-status", "started")
    shot(page, "flow-retried")
    page.click("button[value=cancel]")
    expect(page.locator("#flow-live")).to_have_attribute("data-job-status", "canceled")
    page.goto("/console/audit")
    for action in ("flow_cancel", "flow_retry"):
        expect(page.locator("td", has_text=action).first).to_be_visible()


def test_flow_page_folds_a_map_and_names_a_signal(fleet: dict, admin: Watched) -> None:
    """A map is one row whose items unfold under it with their progress; a signal task
    names its signal; the signal, sent by the API, finishes the flow on the page."""
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    r = requests.post(f"{fleet['xingqiao']}/xingqiao/flow_type_create", timeout=10,
                      headers=auth, json={"name": "mapsig", "tasks": [
                          {"label": "each", "cmd": "/demo_api/hello", "map_over": "words",
                           "map_as": "str_info"},
                          {"label": "go", "signal": "go", "dependencies": ["each"]}]})
    assert r.status_code == 200, r.headers.get("x-reason")
    r = requests.post(f"{fleet['xingqiao']}/xingqiao/create_job", timeout=10, headers=auth,
                      json={"job_namespace": "console", "job_type": "mapsig",
                            "job_extra": {"words": ["a", "b", "c"]}})
    job_id = r.json()["data"]["job_id"]
    page = admin.page
    page.goto(f"/console/flows/flow?id={job_id}")
    expect(page.locator('tr[data-map="each"] [data-field="map-progress"]')).to_have_text(
        "3/3")
    expect(page.locator('tr[data-task="go"]')).to_contain_text("go")
    page.locator('tr[data-map="each"] summary').click()
    expect(page.locator('tr[data-task="each[1]"] [data-task-status]')).to_have_attribute(
        "data-task-status", "finished")
    shot(page, "flow-map")
    r = requests.post(f"{fleet['xingqiao']}/xingqiao/send_signal", timeout=10, headers=auth,
                      json={"job_id": job_id, "name": "go", "payload": {"ok": True}})
    assert r.json()["data"]["delivered_to"] == "go"
    expect(page.locator("#flow-live")).to_have_attribute("data-job-status", "finished")


def test_flow_page_links_a_subflow_and_its_parent(fleet: dict, admin: Watched) -> None:
    """A sub-flow task links to its child flow; the child's page links back."""
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    for name, tasks in (("kid", [{"label": "hi", "cmd": TOPIC, "requires": ["str_info"],
                                  "is_save": True}]),
                        ("dad", [{"label": "spawn", "subflow": {"type": "kid"},
                                  "params": {"str_info": "nested"}}])):
        r = requests.post(f"{fleet['xingqiao']}/xingqiao/flow_type_create", timeout=10,
                          headers=auth, json={"name": name, "tasks": tasks})
        assert r.status_code == 200, r.headers.get("x-reason")
    r = requests.post(f"{fleet['xingqiao']}/xingqiao/create_job", timeout=10, headers=auth,
                      json={"job_namespace": "console", "job_type": "dad"})
    job_id = r.json()["data"]["job_id"]
    page = admin.page
    page.goto(f"/console/flows/flow?id={job_id}")
    expect(page.locator("#flow-live")).to_have_attribute("data-job-status", "finished")
    link = page.locator('tr[data-task="spawn"] [data-field="child-flow"]')
    expect(link).to_be_visible()
    child_id = link.inner_text()
    link.click()
    expect(page).to_have_url(re.compile(rf"/console/flows/flow\?id={child_id}$"))
    expect(page.locator('[data-field="parent-flow"]')).to_contain_text(f"{job_id}")
    expect(page.locator('[data-field="parent-flow"]')).to_contain_text("spawn")
    shot(page, "flow-subflow-child")
    page.locator('[data-field="parent-flow"] a').click()
    expect(page).to_have_url(re.compile(rf"/console/flows/flow\?id={job_id}$"))


def test_flow_page_shows_the_compensation_of_a_failed_flow(fleet: dict,
                                                           admin: Watched) -> None:
    """A failed flow's undo and on_failure tasks are their own section (kind, the step an
    undo undoes, state, result or error), not rows of the flow's steps."""
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    r = requests.post(f"{fleet['xingqiao']}/xingqiao/flow_type_create", timeout=10,
                      headers=auth, json={"name": "booking", "tasks": [
                          {"label": "book", "cmd": TOPIC, "params": {"str_info": "room"},
                           "undo": {"cmd": TOPIC, "params": {"str_info": "unbook"}}},
                          {"label": "pay", "cmd": TOPIC, "requires": ["card"],
                           "dependencies": ["book"]}],
                          "on_failure": [{"label": "alert", "cmd": "/demo_api/ping",
                                          "params": {"bad": 1}}]})
    assert r.status_code == 200, r.headers.get("x-reason")
    r = requests.post(f"{fleet['xingqiao']}/xingqiao/create_job", timeout=10, headers=auth,
                      json={"job_namespace": "console", "job_type": "booking"})
    job_id = r.json()["data"]["job_id"]
    page = admin.page
    page.goto(f"/console/flows/flow?id={job_id}")
    expect(page.locator("#flow-live")).to_have_attribute("data-job-status", "failed")
    section = page.locator('[data-field="compensation"]')
    undo = section.locator('tr[data-compensation="undo:book"]')
    expect(undo.locator('[data-field="undoes"]')).to_have_text("book")
    # core's handlers take no ``saga`` param: the undo fails, and its error is shown
    expect(undo.locator("[data-task-status]")).to_have_attribute("data-task-status", "failed")
    expect(undo.locator('[data-field="compensation-error"]')).to_contain_text("unknown: saga")
    expect(undo.locator('[data-field="compensation-result"]')).to_contain_text("ERR_BAD_PARAMS")
    alert = section.locator('tr[data-compensation="alert"]')
    expect(alert).to_contain_text("on failure")
    expect(alert.locator('[data-field="undoes"]')).to_have_text("-")
    expect(page.locator('tr[data-task="undo:book"]')).to_have_count(0)  # not a step's row
    expect(page.locator('[data-field="job-outcome"]')).to_have_text(
        "ERR_JOB_COMPENSATION_FAILED")
    undo.locator('[data-field="undoes"] a').click()  # to the step it undoes
    expect(page).to_have_url(re.compile(r"#task-book$"))
    shot(page, "flow-compensation")


def test_approval_waits_for_an_operator_and_a_viewer_sees_no_buttons(
        fleet: dict, admin: Watched, browser: Browser) -> None:
    """An approval task waits in "Waiting for you"; a viewer sees it without buttons and
    is refused server-side; an operator approves with a comment and the flow finishes,
    the decision and comment its task's result, the action audited."""
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    r = requests.post(f"{fleet['xingqiao']}/xingqiao/flow_type_create", timeout=10,
                      headers=auth, json={"name": "release", "tasks": [
                          {"label": "ship", "approval": "Ship it?", "timeout": 600},
                          {"label": "done", "cmd": "/demo_api/ping",
                           "dependencies": ["ship"]}]})
    assert r.status_code == 200, r.headers.get("x-reason")
    r = requests.post(f"{fleet['xingqiao']}/xingqiao/create_job", timeout=10, headers=auth,
                      json={"job_namespace": "console", "job_type": "release"})
    job_id = r.json()["data"]["job_id"]
    w = _session(browser, fleet["url"], "vic", VIEWER_PW)
    w.page.goto("/console/flows/waiting")
    expect(w.page.locator(f'tr[data-approval="{job_id}:ship"]')).to_contain_text("Ship it?")
    assert w.page.locator("main form").count() == 0
    csrf = w.page.evaluate("document.querySelector('input[name=csrf_token]').value")
    forged = w.page.request.post("/console/flows/decide", form={
        "job_id": str(job_id), "signal": "ship", "decision": "approve", "csrf_token": csrf})
    assert forged.status == 403
    w.page.context.close()
    page = admin.page
    page.goto("/console/flows/")
    page.click("a[href='/console/flows/waiting']")
    row = page.locator(f'tr[data-approval="{job_id}:ship"]')
    row.locator("input[name=comment]").fill("looks good")
    shot(page, "flow-waiting")
    row.locator("button[value=approve]").click()
    expect(page.locator(f'tr[data-approval="{job_id}:ship"]')).to_have_count(0)
    page.goto(f"/console/flows/flow?id={job_id}")
    expect(page.locator("#flow-live")).to_have_attribute("data-job-status", "finished")
    expect(page.locator('tr[data-task="ship"]')).to_contain_text("looks good")
    detail = requests.get(f"{fleet['xingqiao']}/xingqiao/get_tasklist_by_jobid", timeout=10,
                          params={"job_id": job_id}).json()["data"]["list"]
    ship = next(t for t in detail if t["task_label"] == "ship")
    assert ship["ret_data"] == {"approved": True, "comment": "looks good", "by": "admin",
                                "stat": "OK"}
    page.goto("/console/audit")
    expect(page.locator("td", has_text="flow_approve").first).to_be_visible()


def test_viewer_is_refused_data_and_flow_writes(fleet: dict, browser: Browser) -> None:
    w = _session(browser, fleet["url"], "vic", VIEWER_PW)
    page = w.page
    page.goto("/console/data/instance?namespace=shop&instance_name=web1")
    expect(page.locator('tr[data-item="i|port"]')).to_be_visible()
    assert page.locator("main form").count() == 0
    page.goto("/console/flows/")
    first = page.locator("tr[data-flow]").first.get_attribute("data-flow")
    page.goto(f"/console/flows/flow?id={first}")
    assert page.locator("main form").count() == 0
    csrf = page.evaluate("document.querySelector('input[name=csrf_token]').value")
    for path, form in (("/console/data/item", {"namespace": "shop", "instance_name": "web1",
                                               "item_name": "i|port", "item_value": "1",
                                               "revision": "1"}),
                       ("/console/data/item/rollback", {"item_id": "1", "revision": "1"}),
                       ("/console/flows/create", {"job_namespace": "x", "job_type": "hello"}),
                       ("/console/flows/action", {"job_id": first, "action": "retry"}),
                       ("/console/flows/rerun", {"job_id": first, "task_id": "1"})):
        r = page.request.post(path, form={**form, "csrf_token": csrf})
        assert r.status == 403, path
    assert not w.problems, w.problems
    w.page.context.close()


def test_traffic_page_counts_routes(fleet: dict, admin: Watched) -> None:
    """The sampler turned every service's /metrics into per-route minutes."""
    page = admin.page
    for n in range(3):
        requests.get(f"{fleet['procs']['core'].url}/demo_api/ping", timeout=10)
        fleet["broker"].publish(TOPIC, {"str_info": f"traffic {n}"})

    def has_ping() -> bool:
        page.goto("/console/traffic?range=1h")
        return page.locator('tr[data-route="core GET /demo_api/ping"], '
                            'tr[data-route="core QUEUE /demo_api/hello"]').count() == 2

    wait_until(has_ping, 60, 1.0, "core's ping route on the traffic page")
    row = page.locator('tr[data-route="core GET /demo_api/ping"]')
    assert int(row.locator('[data-field="calls"]').inner_text()) >= 3
    expect(page.locator('tr[data-route="core QUEUE /demo_api/hello"]')).to_have_count(1)
    row.locator("a").click()
    expect(page.locator("#chart-rps .uplot")).to_have_count(1)
    expect(page.locator("#chart-latency .uplot")).to_have_count(1)
    shot(page, "traffic")


def test_search_by_reqid_and_consumer_state(fleet: dict, admin: Watched) -> None:
    page = admin.page
    broker: Broker = fleet["broker"]
    reqid = "0E1F00C0FFEE0001"
    msg_id = broker.publish(TOPIC, {"str_info": "traced"}, reqid=reqid).msg_id
    wait_until(lambda: broker.get(msg_id).status == "finished", 45, 0.1, "traced done")

    def found() -> bool:
        page.goto(f"/console/search?reqid={reqid}")
        return page.locator('#found-lines pre[data-service="core"]').count() >= 1

    wait_until(found, 30, 0.5, "core's access line of the traced message")
    expect(page.locator(f'#found-messages tr[data-msg="{msg_id}"]')).to_be_visible()
    expect(page.locator('#found-lines pre[data-service="core"]').first).to_contain_text(msg_id)
    shot(page, "search")
    # the messages page's finder takes a request id too, and follows it here
    page.goto(f"/console/messages?topic={TOPIC}&status=finished")
    page.fill("input[name=id]", reqid.lower())
    page.click("form:has(input[name=id]) button[type=submit]")
    expect(page).to_have_url(re.compile(rf"/console/search\?reqid={reqid}$"))
    page.click(f'#found-messages a:has-text("{msg_id}")')
    page.click(f'a:has-text("{reqid}")')  # the message's reqid leads back
    expect(page.locator(f'#found-messages tr[data-msg="{msg_id}"]')).to_be_visible()
    r = page.request.get("/console/search?reqid=not-a-reqid")
    assert r.status == 400
    page.goto("/console/consumers")
    core_row = page.locator("#consumer-rows tr", has_text="core").first
    expect(core_row.locator('[data-field="busy-idle"]')).to_have_text(re.compile(r"^\d+ / \d+$"))
    wait_until(lambda: page.goto("/console/consumers") is not None and int(
        page.locator("#consumer-rows tr", has_text="core").first.locator(
            '[data-field="processed"]').inner_text()) >= 1, 30, 1.0, "processed count")
    shot(page, "consumers")


def test_audit_log_of_the_run_is_saved(fleet: dict, admin: Watched) -> None:
    """The console's audit log of this test run, as the browser shows it, beside the
    screenshots (var/screenshots/audit-log.txt): who did what, the refused actions too."""
    page = admin.page
    lines: list[str] = []
    page_no = 1
    while True:
        page.goto(f"/console/audit?page={page_no}")
        rows = page.locator("table tbody tr")
        texts = [" | ".join(cell.strip() for cell in rows.nth(i).locator("td").all_inner_texts())
                 for i in range(rows.count())]
        if not texts or page_no > 20:
            break
        lines.extend(texts)
        page_no += 1
    (SHOTS / "audit-log.txt").write_text(
        "when | who | role | what | target | detail | outcome | ip | reqid\n"
        + "\n".join(lines) + "\n", encoding="utf-8")
    actions = {line.split(" | ")[3] for line in lines}
    assert {"flow_create", "data_set"} <= actions, actions
    outcomes = {line.split(" | ")[6] for line in lines}
    assert outcomes & {"failed", "失败"}, outcomes  # refused actions are audited too


def test_message_page_shows_job_progress(fleet: dict, admin: Watched) -> None:
    """A demo_async_job job run by core's consumer: its page shows "done / total — note"
    and a progress bar while it runs, then the full bar once finished."""
    page = admin.page
    core = fleet["procs"]["core"].url
    reply = requests.post(f"{core}/demo_async_job/submit", timeout=10,
                          headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                          json={"steps": 20, "step_ms": 400, "label": "nightly backup"})
    assert reply.status_code == 200, reply.text
    msg_id = reply.json()["data"]["msg_id"]
    page.goto(f"/console/message?id={msg_id}")
    count = page.locator('[data-field="progress-count"]')

    def midway() -> tuple[int, int] | None:
        page.reload()
        if not count.count():
            return None
        done, total = (int(n) for n in count.inner_text().split(" / "))
        return (done, total) if 0 < done < total else None

    done, total = wait_until(midway, 45, 0.2, "the page showing progress midway")
    assert total == 20
    bar = page.locator('[data-field="progress"] progress')
    assert (bar.get_attribute("value"), bar.get_attribute("max")) == (str(done), "20")
    expect(page.locator('[data-field="progress-note"]')).to_have_text(
        f"nightly backup: step {done} of 20")
    expect(page.locator("[data-status]")).to_have_attribute("data-status", "started")
    shot(page, "message-progress")

    def finished() -> bool:
        page.reload()
        return page.locator("[data-status]").get_attribute("data-status") == "finished"

    wait_until(finished, 45, 0.5, "the job finished")
    expect(count).to_have_text("20 / 20")
    assert (bar.get_attribute("value"), bar.get_attribute("max")) == ("20", "20")
    expect(page.locator('[data-field="result"]')).to_contain_text('"steps": 20')
    shot(page, "message-progress-done")


def test_services_page_lists_routes_and_their_calls(fleet: dict, admin: Watched) -> None:
    """The Services page: each service of the fleet with its instances, its routes and the
    calls the sampler counted per route."""
    page = admin.page
    for _ in range(3):
        requests.get(f"{fleet['procs']['core'].url}/demo_api/ping", timeout=10)

    def ping_counted() -> bool:
        page.goto("/console/services")
        row = page.locator('[data-service="core"] tr[data-route="/demo_api/ping"]')
        return row.count() == 1 and int(row.locator('[data-field="calls"]').inner_text()) >= 3

    wait_until(ping_counted, 60, 1.0, "core's ping calls on the services page")
    expect(page.locator('[data-service="canghai"]')).to_have_count(1)
    expect(page.locator('[data-service="core"] tr[data-instance]')).not_to_have_count(0)
    shot(page, "services")


def test_screenshots_exist() -> None:
    names = {p.stem for p in SHOTS.glob("*.png")}
    for name in ("login", "overview", "queues", "messages-failed", "message-failed",
                 "consumers", "scheduler", "scheduler-job", "scheduler-options",
                 "scheduler-options-refused", "scheduler-backfill", "audit", "users",
                 "data-section", "data-instance", "data-item", "flow-new", "flow", "flows",
                 "traffic", "search", "message-progress", "message-progress-done", "services",
                 "messages-limits", "queues-limits"):
        assert name in names, name
    assert time.time() - (SHOTS / "overview.png").stat().st_mtime < 3600


def test_batches_pages_and_cancel(fleet: dict, admin: Watched) -> None:
    broker: Broker = fleet["broker"]
    bid, _ = broker.publish_batch([{"topic": "/nobody/serves", "data": {"n": n}}
                                   for n in range(5)], on_complete="/nobody/done",
                                  batch_id="browser-batch", data={"order": 9}, force=True)
    page = admin.page
    page.goto("/console/batches")
    expect(page.locator(f"tr[data-batch='{bid}']")).to_be_visible()
    shot(page, "batches")
    page.click(f"tr[data-batch='{bid}'] a")
    expect(page.locator("main h1")).to_contain_text(bid)
    expect(page.locator("[data-field=pending]")).to_have_text("5")
    page.once("dialog", lambda d: d.accept())  # the confirm of the cancel button
    page.click("form[action='/console/batch/cancel'] button")
    expect(page.locator("main h1 [data-state]")).to_have_attribute("data-state", "canceled")
    expect(page.locator("[data-field=failed]")).to_have_text("5")
    shot(page, "batch")
    assert broker.get_batch(bid, repair=False).callbacks["complete"] == "sent"
