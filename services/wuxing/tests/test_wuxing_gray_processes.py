"""Gray release with real processes: wuxing under gunicorn (SQLite and MariaDB) and twenty
client processes (gray_client.py, butterfly_wuxing.client) with different names, labels
and IPs. Each runs exactly the release it should - before and after a promote and after
the aborts - as both it (its state file) and the server (its reports) tell; a client that
rejects a release is counted as rejecting it and keeps running the one before."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import requests
from wuxing_testlib import AUTH, TOKEN

from butterfly_common.redis_client import make_redis
from butterfly_common.testing import ButterflyService, wait_until

HERE = Path(__file__).parent
NS = "grayp"
#: name -> (labels, IP or "-")
CLIENTS = {"c0": ("canary", "-"), "c1": ("canary,zone=us", "-"), "c2": ("zone=eu", "-"),
           "c3": ("", "10.9.1.1"), "c4": ("x", "10.9.200.3"), "c5": ("", "-"),
           "c6": ("", "-"), "c7": ("zone=us", "10.3.0.1"), "c8": ("", "-"),
           "c9": ("bad", "-"), "c10": ("canary", "-"), "c11": ("zone=eu,x", "-"),
           "c12": ("", "10.9.0.7"), "c13": ("zone=us", "-"), "c14": ("", "10.8.0.1"),
           "c15": ("", "-"), "c16": ("canary", "10.9.3.3"), "c17": ("", "-"),
           "c18": ("x,y", "-"), "c19": ("", "-")}
#: Who the gray releases of the test reach: a (label canary, client c5), b (label zone=eu,
#: IPs 10.9.0.0/16; newer than a, so it wins for c16), c (label bad: c9 rejects it).
ON_A = ("c0", "c1", "c5", "c10")
ON_B = ("c2", "c3", "c4", "c11", "c12", "c16")


def test_clients_run_the_release_they_should(redis_server, db_url, tmp_path):
    make_redis(redis_server.url).flushall()
    # every client holds a watch (up to 10 s) on a gunicorn thread: with fewer threads than
    # watchers a worker queues client_config / client_report behind them (20 clients on
    # 2 x 12 threads took ~60 s per database instead of ~23 s)
    env = {"BUTTERFLY_REDIS_URL": redis_server.url, "BUTTERFLY_DB_URL": db_url,
           "BUTTERFLY_ADMIN_TOKEN": TOKEN, "BUTTERFLY_TIMEOUT": "600",
           "BUTTERFLY_WORKERS": "2", "BUTTERFLY_THREADS": "24",
           "BUTTERFLY_TRUSTED_PROXIES": "127.0.0.1",
           # a watch nobody waits for any more (the clients are gone) holds its thread
           # until its deadline, and the stop at the end waited for it: 10 s, then SIGKILL.
           # A change still answers a watch at once; an idle one renews after 2 s.
           "WUXING_WATCH_MAX_TIMEOUT": "2"}
    with ButterflyService("wuxing", env) as svc:
        def ok(handler: str, **params) -> dict:
            body = requests.post(f"{svc.url}/wuxing/{handler}", json=params, headers=AUTH,
                                 timeout=30).json()
            assert body["stat"] == "OK", (handler, body)
            return body.get("data", {})

        ok("section_create", namespace=NS, section_name="s", section_version="1")
        ok("section_item_add", namespace=NS, section_name="s", section_version="1",
           item_name="i|port", item_default=80)
        ok("section_enable", namespace=NS, section_name="s", section_version="1")
        ok("instance_create", namespace=NS, instance_name="web1", section_name="s",
           section_version="1")
        base = ok("review_set", namespace=NS, review=True)["baseline_revision"]
        procs = [subprocess.Popen([sys.executable, str(HERE / "gray_client.py"), svc.url, NS,
                                   name, labels, ip, str(tmp_path / f"{name}.json")])
                 for name, (labels, ip) in CLIENTS.items()]
        try:
            def runs(expected: dict[str, tuple]) -> bool:
                """Each client's (revision, gray_id, port) as its state file says, and its
                (revision, gray_id) as the server knows from its reports."""
                listed = ok("client_list", namespace=NS, page_size=50)["list"]
                server = {c["client"]: (c["running"]["revision"], c["running"]["gray_id"])
                          for c in listed if c["running"]}
                for name, want in expected.items():
                    state = tmp_path / f"{name}.json"
                    if not state.exists():
                        return False
                    got = json.loads(state.read_text())
                    if (got["revision"], got["gray_id"], got["port"]) != want \
                            or server.get(name) != want[:2]:
                        return False
                return True

            wait_until(lambda: runs({n: (base, None, 80) for n in CLIENTS}), 120,
                       interval=0.2, what="every client runs the main release")

            ok("draft_set", namespace=NS, instance_name="web1", items={"i|port": 81})
            a = ok("gray_create", namespace=NS, labels=["canary"], clients=["c5"])["id"]
            ok("draft_set", namespace=NS, instance_name="web1", items={"i|port": 82})
            b = ok("gray_create", namespace=NS, labels=["zone=eu"], ips=["10.9.0.0/16"])["id"]
            ok("draft_set", namespace=NS, instance_name="web1", items={"i|port": 666})
            c = ok("gray_create", namespace=NS, labels=["bad"])["id"]
            phase1 = {n: (base, None, 80) for n in CLIENTS}
            phase1.update({n: (base, a, 81) for n in ON_A})
            phase1.update({n: (base, b, 82) for n in ON_B})
            wait_until(lambda: runs(phase1), 60, interval=0.2, what="gray releases applied")

            def stats() -> list[dict]:
                return ok("client_stats", namespace=NS)["releases"]

            wait_until(lambda: stats() == [
                {"revision": base, "gray_id": None,
                 "applied": len(CLIENTS) - len(ON_A) - len(ON_B), "rejected": 0},
                {"revision": base, "gray_id": a, "applied": len(ON_A), "rejected": 0},
                {"revision": base, "gray_id": b, "applied": len(ON_B), "rejected": 0},
                {"revision": base, "gray_id": c, "applied": 0, "rejected": 1}], 30,
                interval=0.2, what="c9 reported the rejection")
            c9 = ok("client_list", namespace=NS, status="rejected")["list"]
            assert [x["client"] for x in c9] == ["c9"]
            assert "666 is not allowed" in c9[0]["last_report"]["error"]
            assert c9[0]["labels"] == ["bad"]
            assert ok("gray_get", namespace=NS, gray_id=a)["clients"] == {
                "applied": len(ON_A), "rejected": 0}

            promoted = ok("gray_promote", namespace=NS, gray_id=a)["revision"]
            assert promoted > base
            phase2 = {n: (promoted, None, 81) for n in CLIENTS}
            phase2.update({n: (promoted, b, 82) for n in ON_B})
            phase2["c9"] = (base, None, 80)
            wait_until(lambda: runs(phase2), 60, interval=0.2, what="promoted")
            wait_until(lambda: {(s["revision"], s["gray_id"]): s["rejected"] for s in stats()
                                }.get((promoted, c)) == 1, 30, interval=0.2,
                       what="c9 rejected the gray release again on the new main release")

            ok("gray_abort", namespace=NS, gray_id=b)
            ok("gray_abort", namespace=NS, gray_id=c)
            wait_until(lambda: runs({n: (promoted, None, 81) for n in CLIENTS}), 60,
                       interval=0.2, what="aborted: everyone on the main release")
            wait_until(lambda: stats() == [{"revision": promoted, "gray_id": None,
                                            "applied": len(CLIENTS), "rejected": 0}], 30,
                       interval=0.2, what="counts after the aborts")
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.wait(30)
        assert all(p.returncode in (-15, 0) for p in procs), [p.returncode for p in procs]
