"""wuxing as real processes: gunicorn workers, a real redis-server, SQLite and MariaDB.

CAS under contention from two client processes, SIGKILL in the middle of big transactions,
a watcher that follows 1 000 writes across a service restart.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import requests
from wuxing_testlib import AUTH, TOKEN, write_count

from butterfly_common import db, runtime
from butterfly_common.settings import load_settings
from butterfly_common.testing import ButterflyService, child_pids, wait_until
from butterfly_wuxing.models import History, Instance, Item

HERE = Path(__file__).parent


def _service(redis_url: str, db_url: str, port: int | None = None, **env: str):
    # A long worker timeout: on a loaded machine gunicorn would otherwise kill a starved
    # worker mid-request, which these tests would take for a wuxing failure.
    return ButterflyService("wuxing", {"BUTTERFLY_REDIS_URL": redis_url,
                                       "BUTTERFLY_DB_URL": db_url, "BUTTERFLY_TIMEOUT": "600",
                                       "BUTTERFLY_ADMIN_TOKEN": TOKEN, **env}, port=port)


def _call(url: str, handler: str, timeout: float = 30, **params) -> dict:
    return requests.post(f"{url}/wuxing/{handler}", json=params, headers=AUTH,
                         timeout=timeout).json()


def _ok(url: str, handler: str, **params) -> dict:
    body = _call(url, handler, **params)
    assert body["stat"] == "OK", (handler, body)
    return body


def _section(url: str, version: str, items: dict) -> None:
    _ok(url, "section_create", namespace="demo", section_name="big", section_version=version)
    for name, default in items.items():
        _ok(url, "section_item_add", namespace="demo", section_name="big",
            section_version=version, item_name=name, item_default=default)
    _ok(url, "section_enable", namespace="demo", section_name="big", section_version=version)


def _use_db(db_url: str, redis_url: str) -> None:
    runtime.configure(load_settings({"BUTTERFLY_DB_URL": db_url,
                                     "BUTTERFLY_REDIS_URL": redis_url}))


def test_cas_under_contention_loses_no_update(redis_server, db_url):
    """16 clients (8 threads in each of 2 processes) x 200 revision-CAS increments."""
    with _service(redis_server.url, db_url, BUTTERFLY_WORKERS="2", BUTTERFLY_THREADS="8",
                  BUTTERFLY_TRUSTED_PROXIES="127.0.0.1") as svc:
        _ok(svc.url, "section_create", namespace="demo", section_name="c", section_version="1")
        _ok(svc.url, "section_item_add", namespace="demo", section_name="c",
            section_version="1", item_name="i|count", item_default=0)
        _ok(svc.url, "section_enable", namespace="demo", section_name="c", section_version="1")
        _ok(svc.url, "instance_create", namespace="demo", instance_name="counter",
            section_name="c", section_version="1")
        clients = [subprocess.Popen([sys.executable, str(HERE / "cas_client.py"), svc.url,
                                     TOKEN, "8", "200"], stdout=subprocess.PIPE, text=True)
                   for _ in range(2)]
        results = [json.loads(c.communicate(timeout=1800)[0]) for c in clients]
        assert all(c.returncode == 0 for c in clients)
        value = _ok(svc.url, "instance_get", namespace="demo",
                    instance_name="counter")["data"]["i|count"]
        item_id = _ok(svc.url, "instance_get", namespace="demo", instance_name="counter",
                      value_format="detail")["data"]["i|count"]["item_id"]
    _use_db(db_url, redis_server.url)
    with db.database.connection_context():
        updates = History.select().where((History.item_id == item_id)
                                         & (History.cmd == "update")).count()
        revisions = [r for (r,) in History.select(History.revision).where(
            (History.item_id == item_id) & (History.cmd == "update")).tuples()]
    attempts = sum(r["attempts"] for r in results)
    print(f"CAS: final={value} update_rows={updates} attempts={attempts}")
    assert sum(r["done"] for r in results) == 3200
    assert value == 3200
    assert updates == 3200
    assert len(set(revisions)) == 3200


def _kill_worker(svc: ButterflyService) -> None:
    """SIGKILL the worker(s) - the processes doing the work - and wait for a fresh one."""
    assert svc.proc is not None
    old = child_pids(svc.proc.pid)
    for pid in old:
        os.kill(pid, signal.SIGKILL)
    wait_until(lambda: [p for p in child_pids(svc.proc.pid) if p not in old], 30,
               what="gunicorn respawned a worker")
    wait_until(lambda: requests.get(f"{svc.url}/healthz", timeout=2).ok, 30,
               what="service answers again")


def _consistent(name: str, sizes: dict[str, int]) -> str:
    """'old' / 'new' / 'absent' for instance ``name``; fails on orphan or partial items."""
    with db.database.connection_context():
        inst = Instance.get_or_none(Instance.instance_name == name)
        items = list(Item.select().where(Item.instance_name == name))
    if inst is None:
        assert items == [], f"{name}: {len(items)} orphan items"
        return "absent"
    names = {i.item_name for i in items}
    assert len(items) == sizes[inst.section_version], (name, inst.section_version, len(items))
    assert all(n.startswith(f"i|{inst.section_version}_") for n in names)
    return inst.section_version


def _kill_during(svc: ButterflyService, handler: str, delay: float, **params) -> None:
    thread = threading.Thread(target=lambda: _quiet_call(svc.url, handler, **params))
    thread.start()
    time.sleep(delay)
    _kill_worker(svc)
    thread.join(30)


def _quiet_call(url: str, handler: str, **params) -> None:
    with contextlib.suppress(requests.RequestException):
        _call(url, handler, **params)  # the worker dies under the request: the point


def test_sigkill_mid_transaction_never_leaves_orphans(redis_server, db_url):
    v1 = {f"i|v1_{n}": n for n in range(200)}
    v2 = {f"i|v2_{n}": n for n in range(200)}
    sizes = {"v1": 200, "v2": 200}
    with _service(redis_server.url, db_url, BUTTERFLY_WORKERS="1") as svc:
        _section(svc.url, "v1", v1)
        _section(svc.url, "v2", v2)
        _use_db(db_url, redis_server.url)
        started = time.perf_counter()
        _ok(svc.url, "instance_create", namespace="demo", instance_name="probe",
            section_name="big", section_version="v1")
        took = time.perf_counter() - started
        started = time.perf_counter()
        _ok(svc.url, "instance_update_section", namespace="demo", instance_name="probe",
            section_version="v2")
        took_upgrade = time.perf_counter() - started
        outcomes: dict[str, list[str]] = {"create": [], "upgrade": []}
        for n in range(10):
            # kill points from "before it starts" to well after a lone call would answer
            _kill_during(svc, "instance_create", took * n / 3, namespace="demo",
                         instance_name=f"k{n}", section_name="big", section_version="v1")
            outcomes["create"].append(_consistent(f"k{n}", sizes))
            _ok(svc.url, "instance_create", namespace="demo", instance_name=f"u{n}",
                section_name="big", section_version="v1")
            _kill_during(svc, "instance_update_section", took_upgrade * n / 3,
                         namespace="demo", instance_name=f"u{n}", section_version="v2")
            outcomes["upgrade"].append(_consistent(f"u{n}", sizes))
        # every instance the service answers for reads back whole after the kills
        for n in range(10):
            body = _call(svc.url, "instance_get", namespace="demo", instance_name=f"u{n}")
            assert len(body["data"]) == 200
    print(f"kill test ({took * 1000:.0f} ms per 200-item create, {took_upgrade * 1000:.0f} ms"
          f" per upgrade): {outcomes}")
    assert set(outcomes["create"]) <= {"absent", "v1"}
    assert set(outcomes["upgrade"]) <= {"v1", "v2"}


def test_watcher_sees_1000_writes_in_order_exactly_once_across_a_restart(redis_server,
                                                                        sqlite_url):
    svc = _service(redis_server.url, sqlite_url, BUTTERFLY_WORKERS="2").start()
    port = svc.port
    _ok(svc.url, "section_create", namespace="demo", section_name="w", section_version="1")
    _ok(svc.url, "section_item_add", namespace="demo", section_name="w", section_version="1",
        item_name="i|n", item_default=0)
    _ok(svc.url, "section_enable", namespace="demo", section_name="w", section_version="1")
    _ok(svc.url, "instance_create", namespace="demo", instance_name="feed", section_name="w",
        section_version="1")
    since = _ok(svc.url, "watch", namespace="demo")["data"]["revision"]
    url = svc.url
    seen: list[tuple[int, int]] = []
    stop = threading.Event()

    def watcher() -> None:
        last = since
        while not stop.is_set() or len(seen) < 1000:
            try:
                data = requests.get(f"{url}/wuxing/watch", params={
                    "namespace": "demo", "since": last, "timeout": 2}, timeout=10).json()["data"]
            except (requests.RequestException, ValueError, KeyError):
                time.sleep(0.05)  # the service is restarting: resume from the last revision
                continue
            for change in data["changes"]:
                if change["item_name"] == "i|n":
                    seen.append((change["revision"], change["item_value"]))
            last = data["revision"]
            if stop.is_set() and len(seen) >= 1000:
                return

    thread = threading.Thread(target=watcher)
    thread.start()

    try:
        for n in range(1, 501):
            write_count(url, n)
        svc.stop()
        svc = _service(redis_server.url, sqlite_url, port=port, BUTTERFLY_WORKERS="2").start()
        for n in range(501, 1001):
            write_count(url, n)
        stop.set()
        thread.join(60)
    finally:
        stop.set()
        svc.stop()
    print(f"watch: {len(seen)} changes seen, first {seen[:1]}, last {seen[-1:]}")
    assert [v for _, v in seen] == list(range(1, 1001))
    revisions = [r for r, _ in seen]
    assert revisions == sorted(set(revisions))
