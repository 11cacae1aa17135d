"""The watch: many watches of one namespace in one process share one poller of the version
key, every one of them gets the change; with Redis down they fall back to the database."""

from __future__ import annotations

import contextlib
import sys
import threading

from wuxing_testlib import AUTH, make_section

from butterfly_common import db
from butterfly_common.redis_client import make_redis
from butterfly_common.testing import RedisServer, wait_until
from butterfly_wuxing import watch

WEB1 = {"namespace": "demo", "instance_name": "web1"}
WATCHERS = 30


def _get_calls(redis_url: str) -> int:
    stats = make_redis(redis_url).info("commandstats")
    return int(stats.get("cmdstat_get", {}).get("calls", 0))


def _watchers(api, since: int, timeout: float) -> tuple[list[threading.Thread], list[dict]]:
    answers: list[dict] = []

    def watch() -> None:
        reply = api.app.test_client().get("/wuxing/watch", headers=AUTH, query_string={
            "namespace": "demo", "since": since, "timeout": timeout})
        answers.append(reply.get_json())

    threads = [threading.Thread(target=watch) for _ in range(WATCHERS)]
    for thread in threads:
        thread.start()
    return threads, answers


def test_many_watches_share_one_poller_and_all_see_the_write(api, redis_server):
    make_section(api)
    api.ok("instance_create", **WEB1, section_name="host", section_version="v1")
    since = api.ok("namespace_get", namespace="demo")["data"]["revision"]
    before = _get_calls(redis_server.url)
    threads, answers = _watchers(api, since, timeout=20)
    # one poller at WUXING_WATCH_POLL_MAX (20 ms) for ~1 s: tens of GETs, where one
    # poller per watch made WATCHERS times as many
    wait_until(lambda: _get_calls(redis_server.url) - before >= 40, 10, what="polling")
    api.ok("instance_update_item", **WEB1, item_name="i|port", item_value=81)
    for thread in threads:
        thread.join(20)
    polls = _get_calls(redis_server.url) - before
    assert len(answers) == WATCHERS
    for answer in answers:
        assert answer["stat"] == "OK"
        changes = answer["data"]["changes"]
        assert [(c["item_name"], c["item_value"]) for c in changes] == [("i|port", 81)]
    assert polls < 15 * WATCHERS, polls


def test_watches_fall_back_to_the_database_with_redis_down(fresh, sqlite_url):
    server = RedisServer().start()
    with contextlib.contextmanager(fresh)(server.url, sqlite_url) as api:
        make_section(api)
        api.ok("instance_create", **WEB1, section_name="host", section_version="v1")
        since = api.ok("namespace_get", namespace="demo")["data"]["revision"]
        server.stop()
        threads, answers = _watchers(api, since, timeout=20)
        api.ok("instance_update_item", **WEB1, item_name="i|port", item_value=82)
        for thread in threads:
            thread.join(20)
        assert len(answers) == WATCHERS
        assert all([c["item_value"] for c in a["data"]["changes"]] == [82] for a in answers)



def test_watches_queue_for_the_shared_read_without_holding_connections(sqlite_api):
    """Watches behind the namespace queue for the one read of its changes (the memo
    lock); they must not hold pooled connections meanwhile. When they did, 116 server
    threads of a long-polling wuxing took the pool's 32 and the rest failed
    (ERR_SERVER_EXCEPTION)."""
    api = sqlite_api
    make_section(api)
    api.ok("instance_create", **WEB1, section_name="host", section_version="v1")
    since = api.ok("namespace_get", namespace="demo")["data"]["revision"]
    api.ok("instance_update_item", **WEB1, item_name="i|port", item_value=82)
    pool = db.database.obj

    def queued() -> int:
        return sum(1 for frame in sys._current_frames().values()
                   if frame.f_code is watch._shared.__code__)

    with watch._memo_lock:  # the read every watch waits for
        threads, answers = _watchers(api, since, timeout=0)
        wait_until(lambda: queued() == WATCHERS, 10, what="every watch queued for the read")
        assert len(pool._in_use) == 0
    for thread in threads:
        thread.join(20)
    assert [a["stat"] for a in answers] == ["OK"] * WATCHERS
    assert {a["data"]["changes"][0]["item_value"] for a in answers} == {82}
