"""Item values never reach a log: wuxing declares them secret, the framework masks them.

A known secret goes through every wuxing route that takes a value (item defaults,
instance values one and many at a time, by item id, a value a constraint refuses, an
import document, a search by value, a draft), over JSON and over a form body, into items whose
names look like nothing secret. Then every log file of wuxing and canghai is read, and
the console's request search for each of those requests: the secret is nowhere, while
the requests themselves are (so the search did look).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from butterfly_common.testing import ButterflyService, RedisServer, wait_until

ADMIN = "secrets-test-admin-token-0123"
AUTH = {"Authorization": f"Bearer {ADMIN}"}
PASSWORD = "secrets-test-password-1"
SECRET_KEY = "secrets-test-secret-key-0123456789abcdef"
NS = {"namespace": "logs"}
SECTION = {**NS, "section_name": "app", "section_version": "v1"}
INSTANCE = {**NS, "instance_name": "web1"}


def _secret(n: int) -> str:
    return f"Sq{n}{secrets.token_hex(6)}"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("secrets")
    with RedisServer() as redis:
        env = {"BUTTERFLY_REDIS_URL": redis.url, "BUTTERFLY_ADMIN_TOKEN": ADMIN,
               "BUTTERFLY_WORKERS": "1", "BUTTERFLY_SECRET_KEY": SECRET_KEY,
               "BUTTERFLY_LOG_FLUSH_MS": "20"}
        with ButterflyService("wuxing", env) as wuxing, ButterflyService("canghai", {
                **env, "CANGHAI_ADMIN_PASSWORD": PASSWORD,
                "BUTTERFLY_WUXING_URL": wuxing.url,
                "CANGHAI_LOG_DIRS": str(wuxing.log_dir.parent),
                "CANGHAI_FLEET_FILE": str(tmp / "none.toml"),
                "CANGHAI_COOKIE_SECURE": "0"}) as canghai:
            yield {"wuxing": wuxing, "canghai": canghai}


def test_item_values_are_masked_in_every_log_and_in_the_console_search(fleet):
    wuxing: ButterflyService = fleet["wuxing"]
    canghai: ButterflyService = fleet["canghai"]
    used: list[str] = []
    reqids: list[str] = []

    def call(path: str, form: bool = False, **params: Any) -> dict[str, Any]:
        url = f"{wuxing.url}/wuxing/{path}"
        r = (requests.post(url, data=params, headers=AUTH, timeout=30) if form
             else requests.post(url, json=params, headers=AUTH, timeout=30))
        reqids.append(r.headers["x-reqid"])
        return r.json()

    def value() -> str:
        used.append(_secret(len(used)))
        return used[-1]

    assert call("section_create", **SECTION)["stat"] == "OK"
    assert call("section_item_add", **SECTION, item_name="s|note",
                item_default=value())["stat"] == "OK"
    assert call("section_item_add", **SECTION, item_name="s|code", item_default="abc",
                item_regex="^[a-z]+$")["stat"] == "OK"
    assert call("section_enable", **SECTION)["stat"] == "OK"
    assert call("instance_create", **INSTANCE, section_name="app", section_version="v1",
                items_data={"s|note": value()})["stat"] == "OK"
    old = used[-1]
    assert call("instance_update_item", **INSTANCE, item_name="s|note", item_value=value(),
                item_value_old=old)["stat"] == "OK"
    assert call("instance_update_item", form=True, **INSTANCE, item_name="s|note",
                item_value=value())["stat"] == "OK"
    assert call("instance_update_items", **INSTANCE,
                items={"s|note": value()})["stat"] == "OK"
    detail = requests.get(f"{wuxing.url}/wuxing/instance_get", params={
        **INSTANCE, "value_format": "detail"}, timeout=30).json()["data"]
    item_id = detail["s|note"]["item_id"]
    assert call("item_update", item_id=item_id, item_value=value())["stat"] == "OK"
    # refused by the item's constraint: the value must not leak through the reason either
    refused = call("instance_update_item", **INSTANCE, item_name="s|code",
                   item_value="UPPER" + value())
    assert refused["stat"] != "OK"
    bad_type = call("item_update", item_id=item_id, item_value={"nested": value()})
    assert bad_type["stat"] != "OK"
    document = requests.get(f"{wuxing.url}/wuxing/export", params=NS,
                            timeout=30).json()["data"]
    text = str(document)
    assert used[-3] in text  # the export (a read answer) has the current value
    imported = call("import", document=_replace(document, used[-3], value()),
                    namespace="logs2")
    assert imported["stat"] == "OK", imported
    r = requests.get(f"{wuxing.url}/wuxing/item_list", params={
        **NS, "item_name": "s|note", "item_value_operator": "=", "item_value": value()}, timeout=30)
    reqids.append(r.headers["x-reqid"])
    assert r.json()["stat"] == "OK"
    # reviewed publishing: a drafted value, and one its constraint refuses, are masked too
    assert call("review_set", **NS, review=True)["stat"] == "OK"
    assert call("draft_set", **INSTANCE, items={"s|note": value()})["stat"] == "OK"
    assert call("draft_set", **INSTANCE, items={"s|code": "UPPER" + value()})["stat"] != "OK"
    assert call("publish", **NS, message="rotate the note")["stat"] == "OK"

    logs = [wuxing.log_dir, canghai.log_dir]
    # every request has its access line (flushed in batches): wait for the last one
    wait_until(lambda: reqids[-1] in _read_all(logs), timeout=10,
               what="the last request in wuxing's access log")
    everything = _read_all(logs)
    assert all(reqid in everything for reqid in reqids)
    assert [s for s in used if s in everything] == []
    assert "***" in everything  # masked, not dropped

    console = requests.Session()
    page = console.get(f"{canghai.url}/console/login", timeout=30).text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    signed = console.post(f"{canghai.url}/console/login", timeout=30, data={
        "username": "admin", "password": PASSWORD, "csrf_token": csrf, "next": "/console/"})
    assert signed.status_code == 200 and "/console/login" not in signed.url
    for reqid in reqids:
        found = console.get(f"{canghai.url}/console/search", params={"reqid": reqid},
                            timeout=30)
        assert found.status_code == 200 and "/wuxing/" in found.text, reqid
        assert [s for s in used if s in found.text] == [], reqid


def _replace(value: Any, old: str, new: str) -> Any:
    if isinstance(value, dict):
        return {k: _replace(v, old, new) for k, v in value.items()}
    if isinstance(value, list):
        return [_replace(v, old, new) for v in value]
    return new if value == old else value


def _read_all(dirs: list[Path]) -> str:
    parts = []
    for directory in dirs:
        for path in sorted(directory.rglob("*")):
            if path.is_file():
                parts.append(path.read_text(encoding="utf-8", errors="replace"))
    return "\n".join(parts)
