"""The Python client and ``butterfly wuxing ...`` against a real service process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import pytest
from wuxing_testlib import TOKEN

from butterfly_common.testing import ButterflyService
from butterfly_wuxing.client import CasFailed, WuxingClient, WuxingClientError


@pytest.fixture(scope="module")
def service(redis_server, tmp_path_factory):
    db_url = f"sqlite:///{tmp_path_factory.mktemp('wx') / 'wuxing.db'}"
    with ButterflyService("wuxing", {"BUTTERFLY_REDIS_URL": redis_server.url,
                                     "BUTTERFLY_DB_URL": db_url,
                                     "BUTTERFLY_ADMIN_TOKEN": TOKEN}) as svc:
        wx = WuxingClient(svc.url, token=TOKEN)
        wx.call("section_create", namespace="cli", section_name="host", section_version="v1")
        for name, default in (("i|port", 80), ("s|owner", "ops")):
            wx.call("section_item_add", namespace="cli", section_name="host",
                    section_version="v1", item_name=name, item_default=default)
        wx.call("section_enable", namespace="cli", section_name="host", section_version="v1")
        wx.call("instance_create", namespace="cli", instance_name="web1", section_name="host",
                section_version="v1")
        yield svc


def test_client_get_update_cas_and_watch(service):
    wx = WuxingClient(service.url, token=TOKEN)
    assert wx.get("cli", "web1") == {"i|port": 80, "s|owner": "ops"}
    detail = wx.get("cli", "web1", ["i|port"], detail=True)["i|port"]
    since = wx.revision("cli")
    seen = []
    watcher = threading.Thread(target=lambda: seen.extend(
        wx.watch("cli", since, poll=1, stop_after=3)))
    watcher.start()
    done = wx.update("cli", "web1", "i|port", 81, revision=detail["revision"])
    with pytest.raises(CasFailed) as lost:
        wx.update("cli", "web1", "i|port", 82, revision=detail["revision"])
    assert lost.value.current["item_value"] == 81
    assert lost.value.current["revision"] == done["revision"]
    wx.update_items("cli", "web1", {"i|port": 83, "s|owner": "me"})
    watcher.join(30)
    assert [c["item_value"] for c in seen if c["item_name"] == "i|port"] == [81, 83]
    with pytest.raises(WuxingClientError) as missing:
        wx.get("cli", "nope")
    assert missing.value.stat == "ERR_INSTANCE_IS_NOT_EXIST" and missing.value.status == 404


def _cli(service, *args, stdin=None):
    env = {**os.environ, "BUTTERFLY_WUXING_URL": service.url,
           "BUTTERFLY_OPERATOR_TOKEN": "", "BUTTERFLY_ADMIN_TOKEN": TOKEN}
    return subprocess.run([sys.executable, "-m", "butterfly_common.cli", "wuxing", *args],
                          capture_output=True, text=True, env=env, input=stdin, timeout=60)


def test_cli_get_set_watch_export_import(service, tmp_path):
    out = _cli(service, "get", "cli", "web1", "s|owner")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"s|owner": json.loads(
        _cli(service, "get", "cli", "web1").stdout)["s|owner"]}
    since = WuxingClient(service.url).revision("cli")
    assert _cli(service, "set", "cli", "web1", "s|owner", "cli-user").returncode == 0
    refused = _cli(service, "set", "cli", "web1", "i|port", "1", "--revision", "1")
    assert refused.returncode == 1 and "ERR_ITEM_UPDATE_FAILED" in refused.stderr
    started = time.monotonic()
    watched = _cli(service, "watch", "cli", "--since", str(since), "--exit-after", "1")
    # the silence ends it, not the 30 s a watch call stays open (it waited for that before)
    assert time.monotonic() - started < 20
    lines = [json.loads(line) for line in watched.stdout.splitlines()]
    assert [c["item_value"] for c in lines] == ["cli-user"]
    doc = tmp_path / "cli.json"
    assert _cli(service, "export", "cli", "-o", str(doc)).returncode == 0
    dry = _cli(service, "import", str(doc), "--namespace", "cli2", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout)["diff"]["instances_created"][0]["instance_name"] == "web1"
    assert _cli(service, "import", "-", "--namespace", "cli2",
                stdin=doc.read_text()).returncode == 0
    assert json.loads(_cli(service, "get", "cli2", "web1").stdout)["s|owner"] == "cli-user"
    assert _cli(service, "import", "-", stdin="not json").returncode == 2
