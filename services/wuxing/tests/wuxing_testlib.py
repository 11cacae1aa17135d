"""Helpers shared by wuxing's tests (a module with a unique name, importable anywhere)."""

from __future__ import annotations

import time
from typing import Any

import requests

from butterfly_common.app import create_app

TOKEN = "wuxing-test-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class Api:
    """``api.call("section_create", namespace=...)`` -> (status, body, x-reason)."""

    def __init__(self, settings: Any) -> None:
        self.app = create_app("wuxing", settings)
        self.client = self.app.test_client()

    def call(self, handler: str, auth: bool = True, headers: dict | None = None,
             **params: Any) -> tuple[int, dict, str]:
        hdrs = {**(AUTH if auth else {}), **(headers or {})}
        reply = self.client.post(f"/wuxing/{handler}", json=params, headers=hdrs)
        return reply.status_code, reply.get_json(), reply.headers.get("x-reason", "")

    def ok(self, handler: str, **params: Any) -> dict:
        status, body, reason = self.call(handler, **params)
        assert body["stat"] == "OK", (handler, status, body, reason)
        return body

    def stat(self, handler: str, **params: Any) -> str:
        return self.call(handler, **params)[1]["stat"]


def make_section(api: Api, ns: str = "demo", name: str = "host", version: str = "v1",
                 items: dict[str, Any] | None = None, enable: bool = True, **extra: Any) -> None:
    api.ok("section_create", namespace=ns, section_name=name, section_version=version)
    for item_name, default in (items or {"i|port": 80, "s|owner": "ops",
                                         "b|online": True, "f|load": 0.5,
                                         "t|notes": ""}).items():
        api.ok("section_item_add", namespace=ns, section_name=name, section_version=version,
               item_name=item_name, item_default=default, item_description=f"the {item_name}",
               **extra.get(item_name, {}))
    if enable:
        api.ok("section_enable", namespace=ns, section_name=name, section_version=version)


def make_two_hosts(api: Api, ns: str) -> None:
    """The ``host`` section and two instances of it, ``web1`` (port 80) and ``web2``
    (8080): the namespace the review and gray-release tests start from."""
    make_section(api, ns=ns)
    for name, port in (("web1", 80), ("web2", 8080)):
        api.ok("instance_create", namespace=ns, instance_name=name, section_name="host",
               section_version="v1", items_data={"i|port": port})


class Person:
    """Calls as one proxy-authenticated user (no bearer token), from ``ip`` (X-Real-IP)
    when given; the service must trust the test client as a proxy."""

    def __init__(self, api: Api, user: str = "-", role: str | None = "operator",
                 ip: str | None = None) -> None:
        self.api = api
        self.headers = {"X-Username": user, **({"X-Role": role} if role else {}),
                        **({"X-Real-IP": ip} if ip else {})}

    def call(self, handler: str, **params: Any) -> tuple[int, dict, str]:
        return self.api.call(handler, auth=False, headers=self.headers, **params)

    def ok(self, handler: str, **params: Any) -> dict:
        status, body, reason = self.call(handler, **params)
        assert body["stat"] == "OK", (handler, status, body, reason)
        return body["data"]

    def stat(self, handler: str, **params: Any) -> tuple[int, str]:
        status, body, _ = self.call(handler, **params)
        return status, body["stat"]


def write_count(url: str, n: int, instance: str = "feed") -> None:
    """Set ``demo/<instance>``'s ``i|n`` from ``n - 1`` to ``n`` over HTTP (CAS), trying
    again through a server restart; a lost answer whose write landed counts as done."""
    while True:
        try:
            body = requests.post(f"{url}/wuxing/instance_update_item", headers=AUTH,
                                 timeout=10, json={
                                     "namespace": "demo", "instance_name": instance,
                                     "item_name": "i|n", "item_value": n,
                                     "item_value_old": n - 1}).json()
        except requests.RequestException:
            time.sleep(0.05)
            continue
        if body["stat"] == "OK" or body.get("data", {}).get("item_value") == n:
            return
        raise AssertionError(body)
