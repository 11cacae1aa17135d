"""A small Python client for wuxing: get, update with CAS, and a watch iterator.

    from butterfly_wuxing.client import WuxingClient

    wx = WuxingClient()                      # BUTTERFLY_WUXING_URL or http://127.0.0.1:4200
    value = wx.get("demo", "web1")["i|port"]
    wx.update("demo", "web1", "i|port", 81, revision=...)   # CasFailed when it moved on
    for change in wx.watch("demo"):          # every change from now on, in order
        print(change["revision"], change["item_name"], change["item_value"])
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import requests

DEFAULT_URL = "http://127.0.0.1:4200"


class WuxingClientError(RuntimeError):
    """A refused call: ``stat`` (e.g. ERR_INSTANCE_IS_NOT_EXIST), ``reason``, HTTP status."""

    def __init__(self, stat: str, reason: str, status: int, body: dict[str, Any]) -> None:
        super().__init__(f"{stat}: {reason}" if reason else stat)
        self.stat, self.reason, self.status, self.body = stat, reason, status, body


class CasFailed(WuxingClientError):
    """The item changed since it was read; ``current`` holds its value and revision."""

    @property
    def current(self) -> dict[str, Any]:
        return self.body.get("data") or {}


class Compacted(WuxingClientError):
    """``since`` is older than the retained history: re-read the state, watch from there."""


class WuxingClient:
    """Calls ``/wuxing/<handler>`` with JSON; raises WuxingClientError on a refusal."""

    def __init__(self, base_url: str | None = None, token: str | None = None,
                 timeout: float = 10.0) -> None:
        self.base_url = (base_url or os.environ.get("BUTTERFLY_WUXING_URL")
                         or DEFAULT_URL).rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def call(self, handler: str, http_timeout: float | None = None,
             **params: Any) -> dict[str, Any]:
        """One call; the decoded body on OK."""
        params = {k: v for k, v in params.items() if v is not None}
        reply = self.session.post(f"{self.base_url}/wuxing/{handler}", json=params,
                                  timeout=http_timeout or self.timeout)
        try:
            body = reply.json()
        except ValueError:
            raise WuxingClientError("ERR_BAD_REPLY", reply.text[:200], reply.status_code,
                                    {}) from None
        stat = body.get("stat")
        if stat != "OK":
            reason = reply.headers.get("x-reason", "")
            cls = {"ERR_ITEM_UPDATE_FAILED": CasFailed,
                   "ERR_REVISION_COMPACTED": Compacted}.get(stat, WuxingClientError)
            raise cls(str(stat), reason, reply.status_code, body)
        return body

    def get(self, namespace: str, instance_name: str, items: list[str] | None = None,
            detail: bool = False) -> dict[str, Any]:
        """The instance's values (``detail``: item id, type, revision... per item)."""
        return self.call("instance_get", namespace=namespace, instance_name=instance_name,
                         items=",".join(items) if items else None,
                         value_format="detail" if detail else "simple")["data"]

    def update(self, namespace: str, instance_name: str, item_name: str, value: Any, *,
               revision: int | None = None, old: Any = None) -> dict[str, Any]:
        """Set one item; with ``revision`` (or ``old``) only if it did not change meanwhile."""
        return self.call("instance_update_item", namespace=namespace,
                         instance_name=instance_name, item_name=item_name, item_value=value,
                         revision=revision, item_value_old=old)["data"]

    def update_items(self, namespace: str, instance_name: str, items: dict[str, Any],
                     revision: int | None = None) -> dict[str, Any]:
        """Set several items in one transaction (all or nothing)."""
        return self.call("instance_update_items", namespace=namespace,
                         instance_name=instance_name, items=items, revision=revision)["data"]

    def revision(self, namespace: str) -> int:
        return self.call("namespace_get", namespace=namespace)["data"]["revision"]

    def watch(self, namespace: str, since: int | None = None, poll: float = 30.0,
              stop_after: float | None = None) -> Iterator[dict[str, Any]]:
        """Every change after ``since`` (default: from now), in order, each exactly once.

        Survives service restarts and network errors by resuming from the last revision it
        handed out; ``stop_after`` seconds of silence end the iteration (None: never).
        """
        last = self.revision(namespace) if since is None else since
        quiet_since = time.monotonic()
        while stop_after is None or time.monotonic() - quiet_since < stop_after:
            try:
                data = self.call("watch", http_timeout=poll + 10, namespace=namespace,
                                 since=last, timeout=poll)["data"]
            except requests.RequestException:
                time.sleep(0.2)
                continue
            yield from data["changes"]
            if data["changes"]:
                quiet_since = time.monotonic()
            last = data["revision"]

    def export(self, namespace: str) -> dict[str, Any]:
        return self.call("export", namespace=namespace)["data"]

    def import_(self, document: dict[str, Any], namespace: str | None = None,
                dry_run: bool = False) -> dict[str, Any]:
        return self.call("import", document=document, namespace=namespace,
                         dry_run=dry_run)["data"]
