"""The Releases pages in a real browser: wuxing's reviewed publishing and gray releases.

A real wuxing and canghai (``butterfly serve``) on a private redis-server, Debian's chromium
driven by Playwright, four console users: ``admin`` turns review on, operator ``ann`` drafts
and publishes, operator ``bob`` approves (ann approving her own publish is refused by wuxing
and the page says so), a gray release for the ``canary`` label, clients reporting through
wuxing's ``client_report`` route, promote; viewer ``vic`` sees no write button and is
refused (403) when posting anyway. Screenshots land in ``var/screenshots/releases-*.png``.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from canghai_helpers import ADMIN_TOKEN, SECRET
from playwright.sync_api import Browser, Page, expect, sync_playwright
from test_canghai_browser import CHROMIUM, SHOTS, WAIT_MS, XSS, Watched

from butterfly_common.testing import ButterflyService, RedisServer

PASSWORD = "release-password-1"
NS = "rel"


def _add_user(canghai: ButterflyService, name: str, role: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "butterfly_common.cli", "user", "add", name, "--role", role,
         "--password-stdin"], input=PASSWORD + "\n", capture_output=True, text=True,
        timeout=60, check=False, cwd=canghai.workdir, env={**canghai.env})
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def fleet() -> Iterator[dict[str, Any]]:
    redis = RedisServer()
    redis.start()
    env = {"BUTTERFLY_REDIS_URL": redis.url, "BUTTERFLY_ADMIN_TOKEN": ADMIN_TOKEN,
           "BUTTERFLY_SECRET_KEY": SECRET, "BUTTERFLY_WORKERS": "1", "BUTTERFLY_THREADS": "4"}
    procs: list[ButterflyService] = []
    try:
        # canghai calls wuxing as the signed-in user (X-Username from a trusted peer)
        wuxing = ButterflyService("wuxing", {**env, "BUTTERFLY_TRUSTED_PROXIES": "127.0.0.1"})
        procs.append(wuxing.start(60))
        canghai = ButterflyService("canghai", {
            **env, "BUTTERFLY_WUXING_URL": wuxing.url, "CANGHAI_ADMIN_PASSWORD": PASSWORD,
            "CANGHAI_COOKIE_SECURE": "0"})
        procs.append(canghai.start(60))
        for name, role in (("ann", "operator"), ("bob", "operator"), ("vic", "viewer")):
            _add_user(canghai, name, role)
        yield {"url": canghai.url, "wuxing": wuxing.url}
    finally:
        for proc in reversed(procs):
            proc.stop()
        redis.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


def _session(browser: Browser, base: str, user: str) -> Watched:
    ctx = browser.new_context(base_url=base, viewport={"width": 1280, "height": 860})
    ctx.set_default_timeout(WAIT_MS)
    w = Watched(ctx.new_page())
    w.page.goto("/console/lang/en?next=/console/login")
    w.page.fill("input[name=username]", user)
    w.page.fill("input[name=password]", PASSWORD)
    w.page.click("button[type=submit]")
    expect(w.page).to_have_url(re.compile(r"/console/$"))
    return w


def _wuxing(fleet: dict, path: str, **params: Any) -> dict:
    """A call to wuxing as another client of the fleet would make it (admin token)."""
    r = requests.post(f"{fleet['wuxing']}/wuxing/{path}", json=params, timeout=10,
                      headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert r.status_code == 200, (path, r.status_code, r.headers.get("x-reason"))
    return r.json()["data"]


def shot(page: Page, name: str) -> None:
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


@pytest.fixture(scope="module")
def users(fleet: dict, browser: Browser) -> Iterator[dict[str, Watched]]:
    key = {"namespace": NS, "section_name": "host", "section_version": "v1"}
    _wuxing(fleet, "section_create", **key)
    _wuxing(fleet, "section_item_add", **key, item_name="i|port", item_default=80,
            item_min=1, item_max=65535)
    _wuxing(fleet, "section_item_add", **key, item_name="s|note", item_default="-")
    _wuxing(fleet, "section_enable", **key)
    _wuxing(fleet, "instance_create", namespace=NS, instance_name="web1",
            section_name="host", section_version="v1")
    sessions = {name: _session(browser, fleet["url"], name)
                for name in ("admin", "ann", "bob", "vic")}
    yield sessions
    for w in sessions.values():
        w.page.context.close()


@pytest.fixture(autouse=True)
def no_browser_problems(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "users" in request.fixturenames:
        for name, w in request.getfixturevalue("users").items():
            problems, w.problems[:] = list(w.problems), []
            assert not problems, (name, problems)


def _open(w: Watched, view: str = "") -> Page:
    w.page.goto(f"/console/releases/{view}?namespace={NS}")
    return w.page


def test_review_draft_publish_and_second_person_approval(users: dict[str, Watched]) -> None:
    # the admin opts the namespace in (with approval), from the console
    page = users["admin"].page
    page.goto("/console/")
    page.click("header nav a:has-text('Releases')")
    expect(page).to_have_url(re.compile(rf"/console/releases/\?namespace={NS}$"))
    expect(page.locator('[data-field="review"]')).to_have_text("Direct writes")
    shot(page, "releases-direct")
    page.locator('form[data-form="review-on"] button').click()
    expect(page.locator('[data-done="release_review_set"]')).to_be_visible()
    expect(page.locator('[data-field="approval"]')).to_have_text(
        "Needs a second person's approval")
    # ann drafts a value (and a hostile one: it renders as text) and sees the diff
    page = _open(users["ann"])
    assert page.locator('form[data-form="review-on"], form[data-form="approval"]').count() == 0
    for item, value in (("i|port", "81"), ("s|note", XSS)):
        form = page.locator('form[data-form="draft"]')
        form.locator("input[name=instance_name]").fill("web1")
        form.locator("input[name=item_name]").fill(item)
        form.locator("input[name=item_value]").fill(value)
        form.locator("button[type=submit]").click()
        expect(page.locator('[data-done="release_draft_set"]')).to_be_visible()
    expect(page.locator('tr[data-draft="web1/i|port"] [data-field="value"]')).to_have_text("81")
    change = page.locator('table[data-diff="draft"] tr[data-change="web1/i|port"]')
    expect(change.locator('[data-field="old"]')).to_have_text("80")
    expect(change.locator('[data-field="new"]')).to_have_text("81")
    expect(page.locator('tr[data-change="web1/s|note"] [data-field="new"]')).to_contain_text(
        "<script>")
    # a bad value is wuxing's refusal on the page, not an error page
    form = page.locator('form[data-form="draft"]')
    form.locator("input[name=instance_name]").fill("web1")
    form.locator("input[name=item_name]").fill("i|port")
    form.locator("input[name=item_value]").fill("70000")
    form.locator("button[type=submit]").click()
    expect(page.locator('[data-field="action-error"]')).to_contain_text("ERR_ITEM_VALUE_INVALID")
    shot(page, "releases-draft")
    # publish with a message: a request waiting for a second person
    page.locator('form[data-form="publish"] input[name=message]').fill("web1 on port 81")
    page.locator('form[data-form="publish"] button').click()
    expect(page.locator('#pending [data-field="author"]')).to_have_text("ann")
    expect(page.locator('#pending [data-field="message"]')).to_have_text("web1 on port 81")
    assert page.locator('form[data-form="draft"], form[data-form="publish"]').count() == 0
    # ann may not approve her own publish: wuxing's refusal, shown clearly
    decide = page.locator('form[data-form="decide"]')
    decide.locator("input[name=comment]").fill("self")
    decide.locator("button[value=approve]").click()
    expect(page.locator('[data-field="action-error"]')).to_contain_text("ERR_SELF_APPROVAL")
    expect(page.locator("#pending [data-pending]")).to_be_visible()  # still waiting
    shot(page, "releases-self-approval")
    # bob approves with a comment: published, ann the author, bob the approver
    page = _open(users["bob"])
    decide = page.locator('form[data-form="decide"]')
    decide.locator("input[name=comment]").fill("checked the firewall")
    decide.locator("button[value=approve]").click()
    expect(page.locator('[data-done="release_approve"]')).to_be_visible()
    expect(page.locator('[data-field="no-pending"]')).to_be_visible()
    newest = page.locator("#release-list tr[data-release]").first
    expect(newest.locator('[data-field="state"]')).to_have_text("published")
    expect(newest).to_contain_text("ann")
    expect(newest).to_contain_text("bob")
    expect(page.locator('#draft tr[data-draft]')).to_have_count(0)
    # the diff between the baseline and the new release
    revisions = [r for r in page.locator("#release-list tr[data-release]").evaluate_all(
        "rows => rows.map(r => r.dataset.revision)") if r]
    new, base = revisions[0], revisions[-1]
    form = page.locator('form[data-form="compare"]')
    form.locator("input[name=from]").fill(base)
    form.locator("input[name=to]").fill(new)
    form.locator("button").click()
    expect(page.locator('table[data-diff="releases"] tr[data-change="web1/i|port"] '
                        '[data-field="new"]')).to_have_text("81")
    expect(page.locator('#review-log tr[data-log="approve"]')).to_contain_text("bob")
    shot(page, "releases")


def test_gray_release_for_a_label_with_clients_then_promote(
        fleet: dict, users: dict[str, Watched]) -> None:
    page = _open(users["ann"])
    form = page.locator('form[data-form="draft"]')
    form.locator("input[name=instance_name]").fill("web1")
    form.locator("input[name=item_name]").fill("i|port")
    form.locator("input[name=item_value]").fill("82")
    form.locator("button[type=submit]").click()
    expect(page.locator('tr[data-draft="web1/i|port"]')).to_be_visible()
    page.click("nav.counts a:has-text('Gray releases')")
    form = page.locator('form[data-form="gray-create"]')
    form.locator("input[name=labels]").fill("canary")
    form.locator("input[name=message]").fill("82 on the canaries")
    form.locator("button").click()
    expect(page.locator('[data-done="release_gray_create"]')).to_be_visible()
    row = page.locator("tr[data-gray]").first
    expect(row.locator('[data-field="state"]')).to_have_text("pending")  # approval is on
    expect(row.locator('[data-field="rule"]')).to_contain_text("canary")
    # bob approves it on the releases page: it serves its clients from now on
    page = _open(users["bob"])
    expect(page.locator('#pending [data-field="kind"]')).to_contain_text("gray")
    page.locator('form[data-form="decide"] input[name=comment]').fill("canaries only, ok")
    page.locator('form[data-form="decide"] button[value=approve]').click()
    expect(page.locator('[data-done="release_approve"]')).to_be_visible()
    page = _open(users["bob"], "gray")
    row = page.locator("tr[data-gray]").first
    expect(row.locator('[data-field="state"]')).to_have_text("active")
    gray_id = int(row.get_attribute("data-gray") or 0)
    # two clients read what to run and report: a canary gets the gray release
    for client, labels in (("web-9", ["canary"]), ("web-1", []), ("web-7", ["canary"])):
        got = _wuxing(fleet, "client_config", namespace=NS, client=client, labels=labels)
        assert got["gray_id"] == (gray_id if labels else None), got
        status = "rejected" if client == "web-7" else "applied"
        _wuxing(fleet, "client_report", namespace=NS, client=client, labels=labels,
                status=status, revision=got["revision"], gray_id=got["gray_id"],
                error="port 82 is taken" if status == "rejected" else None)
    page.reload()
    row = page.locator(f'tr[data-gray="{gray_id}"]')
    expect(row.locator('[data-field="applied"]')).to_have_text("1")
    expect(row.locator('[data-field="rejected"]')).to_have_text("1")
    expect(page.locator('tr[data-client="web-9"] [data-field="running"]')).to_contain_text(
        f"#{gray_id}")
    expect(page.locator('tr[data-client="web-1"] [data-field="running"]')).to_contain_text(
        "main")
    expect(page.locator('tr[data-client="web-7"]')).to_contain_text("port 82 is taken")
    stat = page.locator(f'#client-stats tr[data-stat$="/{gray_id}"]')
    expect(stat.locator('[data-field="applied"]')).to_have_text("1")
    expect(stat.locator('[data-field="rejected"]')).to_have_text("1")
    shot(page, "releases-gray")
    page.click(f'tr[data-gray="{gray_id}"] a:has-text("{gray_id}")')
    expect(page.locator('tr[data-override="web1/i|port"]')).to_contain_text("82")
    expect(page.locator("#clients tr[data-client]")).to_have_count(1)
    shot(page, "releases-gray-one")
    # ann promotes (a request, approval being on); bob approves; everyone runs 82
    page = _open(users["ann"], "gray")
    form = page.locator(f'tr[data-gray="{gray_id}"] form[data-form="gray-action"]')
    form.locator("input[name=comment]").fill("82 everywhere")
    form.locator("button[value=promote]").click()
    expect(page.locator(f'tr[data-gray="{gray_id}"] [data-field="state"]')).to_have_text(
        "promoting")
    page = _open(users["bob"])
    page.locator('form[data-form="decide"] input[name=comment]').fill("promote ok")
    page.locator('form[data-form="decide"] button[value=approve]').click()
    expect(page.locator('[data-done="release_approve"]')).to_be_visible()
    page = _open(users["bob"], "gray")
    expect(page.locator(f'tr[data-gray="{gray_id}"] [data-field="state"]')).to_have_text(
        "promoted")
    got = _wuxing(fleet, "client_config", namespace=NS, client="web-1")
    assert got["values"]["web1"]["i|port"] == 82 and got["gray_id"] is None


def test_rollback_asks_and_a_rejection_keeps_the_values(
        fleet: dict, users: dict[str, Watched]) -> None:
    """Roll back to the first publish (port 81): with approval on it is a request; bob
    rejects it with a comment, so clients keep 82."""
    page = _open(users["ann"])
    row = page.locator("#release-list tr[data-release]").filter(has_text="web1 on port 81")
    revision = row.get_attribute("data-revision")
    row.locator("button").click()
    expect(page.locator('#pending [data-field="kind"]')).to_contain_text(f"rollback → {revision}")
    page = _open(users["bob"])
    page.locator('form[data-form="decide"] input[name=comment]').fill("not today")
    page.locator('form[data-form="decide"] button[value=reject]').click()
    expect(page.locator('[data-done="release_reject"]')).to_be_visible()
    newest = page.locator("#release-list tr[data-release]").first
    expect(newest.locator('[data-field="state"]')).to_have_text("rejected")
    expect(newest).to_contain_text("not today")
    got = _wuxing(fleet, "client_config", namespace=NS, client="web-1")
    assert got["values"]["web1"]["i|port"] == 82


def test_a_direct_edit_in_a_reviewed_namespace_points_to_the_draft(
        users: dict[str, Watched]) -> None:
    page = users["ann"].page
    page.goto(f"/console/data/instance?namespace={NS}&instance_name=web1")
    row = page.locator('tr[data-item="i|port"]')
    row.locator("input[name=item_value]").fill("83")
    row.locator("button[type=submit]").click()
    expect(page.locator('[data-field="edit-error"]')).to_contain_text("ERR_NAMESPACE_REVIEWED")
    page.click('[data-field="to-draft"]')
    expect(page.locator('form[data-form="draft"]')).to_be_visible()


def test_viewer_sees_no_buttons_and_is_refused(users: dict[str, Watched]) -> None:
    page = _open(users["vic"])
    expect(page.locator("#release-list tr[data-release]").first).to_be_visible()
    assert page.locator("main form[method=post]").count() == 0
    shot(page, "releases-viewer")
    page.goto(f"/console/lang/zh?next=/console/releases/%3Fnamespace%3D{NS}")
    expect(page.locator("main h1")).to_contain_text("发布管理")
    shot(page, "releases-zh")
    page = _open(users["vic"], "gray")
    expect(page.locator("tr[data-gray]").first).to_be_visible()
    assert page.locator("main form[method=post]").count() == 0
    csrf = page.evaluate("document.querySelector('input[name=csrf_token]').value")
    for path, form in (("review", {"review": "0"}),
                       ("draft", {"instance_name": "web1", "item_name": "i|port",
                                  "item_value": "1"}),
                       ("draft/discard", {}), ("publish", {"message": "m"}),
                       ("decide", {"decision": "approve", "comment": "c"}),
                       ("rollback", {"revision": "1"}),
                       ("gray/create", {"labels": "canary"}),
                       ("gray/action", {"gray_id": "1", "action": "abort"})):
        r = page.request.post(f"/console/releases/{path}",
                              form={"namespace": NS, **form, "csrf_token": csrf})
        assert r.status == 403, path
    # an operator (not admin) may not change the publishing mode either
    page = _open(users["ann"])
    csrf = page.evaluate("document.querySelector('input[name=csrf_token]').value")
    r = page.request.post("/console/releases/review",
                          form={"namespace": NS, "review": "0", "csrf_token": csrf})
    assert r.status == 403
    # and without the CSRF token nobody writes
    r = users["admin"].page.request.post("/console/releases/publish",
                                         form={"namespace": NS, "message": "m"})
    assert r.status == 403


def test_console_audit_has_the_release_actions(users: dict[str, Watched]) -> None:
    page = users["admin"].page
    page.goto("/console/audit")
    text = page.locator("main table").inner_text()
    for action in ("release_review_set", "release_draft_set", "release_publish",
                   "release_approve", "release_gray_create", "release_gray_promote",
                   "release_rollback", "release_reject"):
        assert action in text, action
    refused = page.locator("tr", has_text="release_approve").filter(has_text="ERR_SELF_APPROVAL")
    expect(refused.first).to_be_visible()
