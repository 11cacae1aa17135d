"""A user's own service (``butterfly new``) that deploy's fleet file does not name still
shows in canghai: it announces itself in Redis at start, canghai lists it with its routes
on /canghai/service_list and the services page, scrapes its /metrics and counts its calls.

Real processes on one redis-server: canghai (its fleet file names only itself) and the
scaffolded project served by ``butterfly serve <package>:service`` from its folder.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from canghai_helpers import ADMIN_TOKEN, SECRET, csrf_of

from butterfly_common import announce
from butterfly_common.redis_client import make_redis
from butterfly_common.scaffold import new_project
from butterfly_common.testing import ButterflyService, RedisServer, free_port, wait_until

NAME = "bfann_shop"  # the user's service: its package, app and topics' first part
PASSWORD = "announced-admin-pw-1"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


class Fleet:
    def __init__(self, canghai: ButterflyService, shop: ButterflyService, redis: Any):
        self.canghai, self.shop, self.redis = canghai, shop, redis

    def services(self) -> dict[str, dict[str, Any]]:
        r = requests.get(f"{self.canghai.url}/canghai/service_list", headers=ADMIN, timeout=10)
        assert r.status_code == 200, r.text
        return {s["name"]: s for s in r.json()["data"]["services"]}


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    tmp = tmp_path_factory.mktemp("announced")
    project = new_project(NAME, tmp, port=free_port())
    canghai_port = free_port()
    fleet_file = tmp / "fleet.toml"
    fleet_file.write_text(f"[service.canghai]\nport = {canghai_port}\n", encoding="utf-8")
    with contextlib.ExitStack() as stack:
        redis = stack.enter_context(RedisServer())
        common = {"BUTTERFLY_REDIS_URL": redis.url, "BUTTERFLY_WORKERS": "1"}
        canghai = stack.enter_context(ButterflyService("canghai", {
            **common, "BUTTERFLY_SECRET_KEY": SECRET, "BUTTERFLY_ADMIN_TOKEN": ADMIN_TOKEN,
            "CANGHAI_ADMIN_PASSWORD": PASSWORD, "CANGHAI_FLEET_FILE": str(fleet_file),
            "CANGHAI_SAMPLE_SECONDS": "0.5",
            "CANGHAI_COOKIE_SECURE": "0"}, port=canghai_port))  # plain http here
        shop = stack.enter_context(ButterflyService(f"{NAME}:service", {
            **common, "PYTHONPATH": str(project / "src")}))
        yield Fleet(canghai, shop, make_redis(redis.url))


def test_the_service_announces_itself_with_its_routes(fleet: Fleet) -> None:
    entries = wait_until(lambda: [e for e in announce.announced(fleet.redis)
                                  if e["service"] == NAME], 15, what="the announcement")
    (entry,) = entries
    assert entry["url"] == fleet.shop.url  # BUTTERFLY_HOST:BUTTERFLY_PORT, as served
    paths = {r["path"]: r for r in entry["routes"]}
    assert paths[f"/{NAME}/greet"] == {"path": f"/{NAME}/greet", "kind": "api", "role": None}
    assert f"/{NAME}/add" in paths
    # the built-in services announce too: canghai itself, with its original API
    (own,) = [e for e in announce.announced(fleet.redis) if e["service"] == "canghai"]
    assert "/canghai/queue_list" in {r["path"] for r in own["routes"]}


def test_canghai_lists_it_beside_the_fleet_files_services(fleet: Fleet) -> None:
    listed = wait_until(lambda: (s := fleet.services()).get(NAME) and s, 15,
                        what=f"{NAME} on service_list")
    shop = listed[NAME]
    assert shop["announced"] is True  # the fleet file does not name it
    (inst,) = shop["instances"]
    assert inst["url"] == fleet.shop.url
    assert inst["name"] == f"{NAME}@127.0.0.1:{fleet.shop.port}"
    assert {r["path"] for r in shop["routes"]} >= {f"/{NAME}/greet", f"/{NAME}/add"}
    # canghai, named by the fleet file, is listed from it (its one instance: the file's)
    assert listed["canghai"]["announced"] is False
    assert [i["url"] for i in listed["canghai"]["instances"]] == [fleet.canghai.url]
    # the probe reaches the announced instance
    wait_until(lambda: fleet.services()[NAME]["instances"][0]["state"] == "ready", 15,
               what="the instance probed ready")
    bad = requests.get(f"{fleet.canghai.url}/canghai/service_list?minutes=0", headers=ADMIN,
                       timeout=10)
    assert bad.status_code == 400 and bad.json()["stat"] == "ERR_BAD_PARAMS"
    anonymous = requests.get(f"{fleet.canghai.url}/canghai/service_list", timeout=10)
    assert anonymous.status_code == 401


def _scraped(fleet: Fleet) -> bool:
    """canghai's sampler has taken the instance's baseline (its first /metrics)."""
    from butterfly_canghai import traffic

    raw = fleet.redis.get(traffic.LAST_KEY)
    return bool(raw) and f"{NAME}@127.0.0.1:{fleet.shop.port}" in json.loads(raw)


def test_its_traffic_is_counted_per_route(fleet: Fleet) -> None:
    wait_until(lambda: _scraped(fleet), 20, what="the sampler's first scrape of it")
    for i in range(5):
        r = requests.get(f"{fleet.shop.url}/{NAME}/greet", params={"name": f"u{i}"},
                         timeout=10)
        assert r.json() == {"stat": "OK", "greeting": f"hello, u{i}"}
    for _ in range(2):  # b is missing: ERR_BAD_PARAMS, counted as errors
        assert requests.get(f"{fleet.shop.url}/{NAME}/add", params={"a": 1},
                            timeout=10).status_code == 400

    def counted() -> dict[str, dict[str, Any]] | None:
        routes = {r["path"]: r for r in fleet.services()[NAME]["routes"]}
        done = routes[f"/{NAME}/greet"]["calls"] == 5 and routes[f"/{NAME}/add"]["calls"] == 2
        return routes if done else None

    routes = wait_until(counted, 30, interval=0.2, what="the calls sampled")
    assert routes[f"/{NAME}/greet"]["errors"] == 0
    assert routes[f"/{NAME}/add"]["errors"] == 2
    assert fleet.services()[NAME]["calls"] >= 7

    # the console's services page shows the same, signed in as a viewer and up
    with requests.Session() as browser:
        csrf = csrf_of(browser.get(f"{fleet.canghai.url}/console/login", timeout=10).text)
        r = browser.post(f"{fleet.canghai.url}/console/login", timeout=10, data={
            "username": "admin", "password": PASSWORD, "csrf_token": csrf,
            "next": "/console/services"})
        assert r.status_code == 200 and r.url.endswith("/console/services"), r.url
        html = r.text
    section = html[html.index(f'data-service="{NAME}"'):]
    section = section[:section.index("</section>")]
    assert f"{NAME}@127.0.0.1:{fleet.shop.port}" in section
    greet = section[section.index(f'data-route="/{NAME}/greet"'):]
    assert '<td class="num" data-field="calls">5</td>' in greet[:greet.index("</tr>")]
    add = section[section.index(f'data-route="/{NAME}/add"'):]
    assert 'data-field="errors">2</td>' in add[:add.index("</tr>")]


def test_a_stopped_instance_drops_out_and_old_records_are_forgotten(fleet: Fleet) -> None:
    """Records are fresh for announce.STALE seconds and deleted after FORGET."""
    old = {"service": "gone_svc", "url": "http://127.0.0.1:9", "routes": [], "seen": 1.0}
    fleet.redis.hset(announce.KEY, "gone_svc|http://127.0.0.1:9", json.dumps(old))
    stale = {**old, "service": "stale_svc", "url": "http://127.0.0.1:10"}
    import time

    stale["seen"] = time.time() - announce.STALE - 5
    fleet.redis.hset(announce.KEY, "stale_svc|http://127.0.0.1:10", json.dumps(stale))
    fleet.redis.hset(announce.KEY, "junk", "not json")
    names = {e["service"] for e in announce.announced(fleet.redis)}
    assert NAME in names and "stale_svc" not in names and "gone_svc" not in names
    fields = set(fleet.redis.hkeys(announce.KEY))
    assert "stale_svc|http://127.0.0.1:10" in fields  # silent a while: kept, not listed
    assert "gone_svc|http://127.0.0.1:9" not in fields and "junk" not in fields
    assert "stale_svc" not in fleet.services()
