"""A small Python client for wuxing: get, update with CAS, and a watch iterator.

    from butterfly_wuxing.client import WuxingClient

    wx = WuxingClient()                      # BUTTERFLY_WUXING_URL or http://127.0.0.1:4200
    value = wx.get("demo", "web1")["i|port"]
    wx.update("demo", "web1", "i|port", 81, revision=...)   # CasFailed when it moved on
    for change in wx.watch("demo"):          # every change from now on, in order
        print(change["revision"], change["item_name"], change["item_value"])

    wx = WuxingClient(client="web-7", labels=["zone=eu", "canary"])
    release = wx.config("demo")              # main release or the gray one for this client
    wx.report("demo", release)               # applied (error="...": rejected)

    wx = WuxingClient(client="web-7", cache_dir="/var/lib/web/wuxing-cache")
    release = wx.config("demo")              # during a wuxing outage: the cached release,
    if release["stale"]: ...                 # flagged stale, with cached_at and age

A thin layer over the framework's ``ServiceClient`` (reqid, token, pooled connections,
time-outs, the envelope): its methods name wuxing's routes and return their ``data``; a
refusal raises the ``ServiceError`` of its stat (``CasFailed``, ``Compacted``...), no
answer a ``TransportError``. With ``cache_dir`` the client survives a wuxing outage:
``config`` keeps the last release per namespace in local files (``client_cache``) and
answers from them while wuxing cannot be reached.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

from butterfly_common.httpclient import (
    BadParams,
    CallError,
    ServiceClient,
    ServiceError,
    TransportError,
    errors_by_stat,
    given,
)

from .client_cache import ReleaseCache

log = logging.getLogger(__name__)

DEFAULT_URL = "http://127.0.0.1:4200"

#: A refused call: ``stat`` (e.g. ERR_INSTANCE_IS_NOT_EXIST), ``reason``, HTTP ``status``
#: and the answered body as ``data``.
WuxingClientError = ServiceError


class CasFailed(ServiceError):
    """The item changed since it was read; ``current`` holds its value and revision."""

    STAT = "ERR_ITEM_UPDATE_FAILED"

    @property
    def current(self) -> dict[str, Any]:
        return self.data.get("data") or {}


class Compacted(ServiceError):
    """``since`` is older than the retained history: re-read the state, watch from there."""

    STAT = "ERR_REVISION_COMPACTED"


class WuxingClient(ServiceClient):
    """Calls ``/wuxing/<handler>``; ``base_url`` defaults to ``BUTTERFLY_WUXING_URL``, else
    the installed wuxing's port."""

    app = "wuxing"
    errors = errors_by_stat(CasFailed, Compacted)

    def __init__(self, base_url: str | None = None, token: str | None = None,
                 timeout: float = 10.0, *, client: str | None = None,
                 labels: list[str] | None = None,
                 cache_dir: str | os.PathLike[str] | None = None) -> None:
        super().__init__(base_url or "wuxing", token=token, timeout=timeout,
                         default_url=DEFAULT_URL)
        #: who this client is to gray release rules: its name and labels (its IP is the
        #: one the server sees)
        self.client = client
        self.labels = list(labels or [])
        #: the last release per namespace, for outages (None: no cache, outages raise)
        self.cache = None if cache_dir is None else ReleaseCache(cache_dir)
        self._outage_since: float | None = None  # monotonic; set while wuxing is down
        self._outage_lock = threading.Lock()

    def config(self, namespace: str) -> dict[str, Any]:
        """The release this client should run: ``values`` (``{instance: {item: value}}``),
        ``revision`` (the main release), ``gray_id`` (a gray release, or None),
        ``namespace_revision`` (watch from there to learn of the next one) and ``stale``.

        With a cache, an answer is stored; when wuxing cannot be reached (no answer, a
        time-out, a 5xx) the stored one is answered with ``stale: True``, ``cached_at``
        (epoch seconds) and ``age`` (seconds), and with none stored the error is raised.
        """
        try:
            release: dict[str, Any] = self.data("client_config", given(
                namespace=namespace, client=self.client, labels=self.labels or None))
        except CallError as exc:
            if self.cache is None or not _is_outage(exc):
                raise
            self._note_outage(exc)
            cached = self.cache.load(namespace)
            if cached is None:
                raise
            return {**cached.release, "stale": True, "cached_at": cached.cached_at,
                    "age": max(0.0, time.time() - cached.cached_at)}
        if self.cache is not None:
            self._note_recovery()
            try:
                self.cache.save(namespace, release)
            except OSError as exc:  # a full disk must not cost the application its answer
                log.warning("wuxing client cache: cannot write %s (%s)",
                            self.cache.path(namespace), exc)
        release["stale"] = False
        return release

    def _note_outage(self, exc: CallError) -> None:
        """Log the start of an outage once (not once per call)."""
        with self._outage_lock:
            if self._outage_since is not None:
                return
            self._outage_since = time.monotonic()
        log.warning("wuxing at %s cannot be reached (%s): config() answers the releases "
                    "cached in %s, flagged stale, until it is back", self.base_url, exc,
                    self.cache.directory if self.cache else "-")

    def _note_recovery(self) -> None:
        """Log the end of an outage once."""
        with self._outage_lock:
            since, self._outage_since = self._outage_since, None
        if since is not None:
            log.warning("wuxing at %s answers again after %.1f s: config() answers fresh "
                        "releases again", self.base_url, time.monotonic() - since)

    def report(self, namespace: str, release: dict[str, Any],
               error: str | None = None) -> dict[str, Any]:
        """Tell the server this client applied ``release`` (as ``config`` answered it), or
        rejected it when ``error`` (its validation error) is given. Needs ``client``."""
        if not self.client:
            raise ValueError("report needs WuxingClient(client=<this client's name>)")
        return self.data("client_report", given(
            namespace=namespace, client=self.client,
            status="applied" if error is None else "rejected",
            revision=release["revision"], gray_id=release.get("gray_id"), error=error,
            labels=self.labels or None))

    def get(self, namespace: str, instance_name: str, items: list[str] | None = None,
            detail: bool = False) -> dict[str, Any]:
        """The instance's values (``detail``: item id, type, revision... per item)."""
        return self.data("instance_get", given(
            namespace=namespace, instance_name=instance_name,
            items=",".join(items) if items else None,
            value_format="detail" if detail else "simple"))

    def update(self, namespace: str, instance_name: str, item_name: str, value: Any, *,
               revision: int | None = None, old: Any = None) -> dict[str, Any]:
        """Set one item; with ``revision`` (or ``old``) only if it did not change meanwhile."""
        return self.data("instance_update_item", given(
            namespace=namespace, instance_name=instance_name, item_name=item_name,
            item_value=value, revision=revision, item_value_old=old))

    def update_items(self, namespace: str, instance_name: str, items: dict[str, Any],
                     revision: int | None = None) -> dict[str, Any]:
        """Set several items in one transaction (all or nothing)."""
        return self.data("instance_update_items", given(
            namespace=namespace, instance_name=instance_name, items=items,
            revision=revision))

    def revision(self, namespace: str) -> int:
        """The namespace's last committed revision."""
        return int(self.data("namespace_get", {"namespace": namespace})["revision"])

    def watch(self, namespace: str, since: int | None = None, poll: float = 30.0,
              stop_after: float | None = None,
              stream: bool = True) -> Iterator[dict[str, Any]]:
        """Every change after ``since`` (default: from now), in order, each exactly once.

        Survives service restarts and network errors by resuming from the last revision it
        handed out; ``stop_after`` seconds of silence end the iteration (None: never).

        Each change is read from a streamed watch (``/wuxing/watch?stream=1``, one
        connection open ``poll`` seconds at a time) and handed out once its whole revision
        has arrived; a server that refuses the parameter (before streaming) is long-polled
        instead, as with ``stream=False``.
        """
        last = self.revision(namespace) if since is None else since
        quiet_since = time.monotonic()
        while stop_after is None or time.monotonic() - quiet_since < stop_after:
            wait = poll  # a call never outlasts the silence that ends the iteration
            if stop_after is not None:
                wait = min(poll, max(0.0, stop_after - (time.monotonic() - quiet_since)))
            params = {"namespace": namespace, "since": last, "timeout": wait}
            if stream:
                pending: list[dict[str, Any]] = []
                lines = self.stream("watch", {**params, "stream": True}, timeout=wait + 10)
                try:
                    for line in lines:
                        if "stream" not in line:  # a change: held until its revision ends
                            pending.append(line)
                            continue
                        if pending:
                            yield from pending
                            pending = []
                            quiet_since = time.monotonic()
                        last = max(last, int(line["revision"]))
                        if stop_after is not None and \
                                time.monotonic() - quiet_since >= stop_after:
                            return
                except BadParams:  # a server without streams: "unknown: stream"
                    log.info("wuxing at %s does not stream watches: long-polling",
                             self.base_url)
                    stream = False
                except TransportError:
                    time.sleep(0.2)
                finally:
                    lines.close()
                continue
            try:
                data = self.data("watch", params, timeout=wait + 10)
            except TransportError:
                time.sleep(0.2)
                continue
            yield from data["changes"]
            if data["changes"]:
                quiet_since = time.monotonic()
            last = data["revision"]

    def export(self, namespace: str) -> dict[str, Any]:
        """The namespace as one JSON document (``import_`` takes it back)."""
        return self.data("export", {"namespace": namespace})

    def import_(self, document: dict[str, Any], namespace: str | None = None,
                dry_run: bool = False) -> dict[str, Any]:
        """Import an exported ``document`` (into ``namespace`` if given); the diff."""
        return self.data("import", given(document=document, namespace=namespace,
                                         dry_run=dry_run))


def _is_outage(exc: CallError) -> bool:
    """wuxing did not answer (connection refused, time-out, a proxy's error page) or failed
    (5xx): an outage. A refusal (4xx: bad namespace, no credential...) is an answer."""
    return isinstance(exc, TransportError) or exc.status >= 500
