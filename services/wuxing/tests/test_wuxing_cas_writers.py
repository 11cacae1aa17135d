"""Concurrent CAS writers of one namespace (store.run_prepared: the rows are locked first, the
namespace's revision last): every write gets its own revision, in order, with its history
row; a lost CAS takes no revision; structural writes racing the value writes (the other
lock order, namespace first) end in a consistent state. Both databases, real threads."""

from __future__ import annotations

import contextlib
import logging
import threading
import time

import pytest
from wuxing_testlib import make_section

from butterfly_common import db
from butterfly_common.testing import mariadb_database
from butterfly_wuxing import instances, rowsql, store
from butterfly_wuxing.errors import WuxingError
from butterfly_wuxing.models import History, Item
from butterfly_wuxing.revisions import namespace_revision

WRITERS = 6
WRITES = 20


@pytest.fixture
def mysql_api(redis_server, fresh):
    """``api`` on MariaDB only: a race staged between two writes of one namespace."""
    with mariadb_database("wuxing_t") as url, \
            contextlib.contextmanager(fresh)(redis_server.url, url) as api:
        yield api


def _threads(target, count: int) -> list[BaseException]:
    errors: list[BaseException] = []

    def run(n: int) -> None:
        try:
            target(n)
        except BaseException as exc:
            errors.append(exc)
        finally:
            if not db.database.is_closed():
                db.database.close()

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not any(t.is_alive() for t in threads), "a writer hung"
    return errors


def _instances(api, count: int) -> None:
    make_section(api, ns="cas")
    for n in range(count):
        api.ok("instance_create", namespace="cas", instance_name=f"i{n}", section_name="host",
               section_version="v1", items_data={"i|port": 0})


def test_concurrent_writers_get_ordered_revisions_and_complete_history(api):
    _instances(api, WRITERS)
    start = api.ok("namespace_get", namespace="cas")["data"]["revision"]
    got: dict[int, list[int]] = {}

    def writer(n: int) -> None:
        mine = got.setdefault(n, [])
        item = api.ok("instance_get", namespace="cas", instance_name=f"i{n}",
                      value_format="detail")["data"]["i|port"]
        revision = item["revision"]
        for value in range(1, WRITES + 1):
            done = instances.update_items("cas", f"i{n}", {"i|port": value}, "t",
                                          item_revisions={"i|port": revision})
            revision = done["revision"]
            mine.append(revision)

    assert _threads(writer, WRITERS) == []
    every = [r for revs in got.values() for r in revs]
    assert len(every) == len(set(every)) == WRITERS * WRITES
    for revs in got.values():
        assert revs == sorted(revs)
    # no gap: the namespace's revisions are exactly start+1 .. start+N, each one write's
    assert sorted(every) == list(range(start + 1, start + WRITERS * WRITES + 1))
    with db.database.connection_context():
        assert namespace_revision("cas")[0] == start + WRITERS * WRITES
        rows = list(History.select(History.revision, History.instance_name, History.value_new)
                    .where((History.namespace == "cas") & (History.cmd == "update"))
                    .tuples())
        finals = {i.instance_name: i.value_int for i in Item.select().where(
            (Item.namespace == "cas") & (Item.item_name == "i|port"))}
    assert sorted(r for r, _, _ in rows) == sorted(every)
    for n, revs in got.items():
        mine = sorted((r, v) for r, name, v in rows if name == f"i{n}")
        assert [r for r, _ in mine] == revs
        assert [v for _, v in mine] == [str(v) for v in range(1, WRITES + 1)]
        assert finals[f"i{n}"] == WRITES


def test_a_lost_cas_takes_no_revision_and_the_others_commit(api):
    _instances(api, 3)
    item = api.ok("instance_get", namespace="cas", instance_name="i0",
                  value_format="detail")["data"]["i|port"]
    before = api.ok("namespace_get", namespace="cas")["data"]["revision"]
    barrier = threading.Barrier(3)
    outcome: dict[int, object] = {}

    def writer(n: int) -> None:
        barrier.wait(30)
        try:  # i0 with a stale revision, the others without a condition
            outcome[n] = instances.update_items(
                "cas", f"i{n}", {"i|port": 7}, "t",
                item_revisions={"i|port": item["revision"] - 1} if n == 0 else None)
        except WuxingError as exc:
            outcome[n] = exc.stat

    assert _threads(writer, 3) == []
    assert outcome[0] == "ERR_ITEM_UPDATE_FAILED"
    assert {outcome[1]["revision"], outcome[2]["revision"]} == {before + 1, before + 2}
    assert api.ok("namespace_get", namespace="cas")["data"]["revision"] == before + 2
    assert api.ok("instance_get", namespace="cas", instance_name="i0")["data"]["i|port"] == 0


def test_value_writes_racing_section_upgrades_stay_consistent(api):
    """update_section takes the namespace first and then the rows, update_items the rows
    first: where the two deadlock the database refuses one and it runs again."""
    _instances(api, 2)
    api.ok("section_create", namespace="cas", section_name="host", section_version="v2")
    for name, default in (("i|port", 80), ("s|owner", "ops")):
        api.ok("section_item_add", namespace="cas", section_name="host",
               section_version="v2", item_name=name, item_default=default)
    api.ok("section_enable", namespace="cas", section_name="host", section_version="v2")
    done: dict[int, int] = {}

    def worker(n: int) -> None:
        if n == 0:
            for k in range(10):
                instances.update_section("cas", "i0", "v2" if k % 2 == 0 else "v1", "t")
            return
        for value in range(1, WRITES + 1):
            instances.update_items("cas", "i0", {"i|port": value}, "t")
            done[n] = value

    assert _threads(worker, 3) == []
    assert done == {1: WRITES, 2: WRITES}
    data = api.ok("instance_get", namespace="cas", instance_name="i0")
    assert data["data"]["i|port"] == WRITES
    with db.database.connection_context():
        updates = History.select().where((History.namespace == "cas")
                                         & (History.instance_name == "i0")
                                         & (History.cmd == "update")).count()
    assert updates == 2 * WRITES


def _race_after_prepare(monkeypatch, competitor) -> None:
    """Run ``competitor`` (a whole write, in another thread) right after the next write's
    prepare has read its rows, before it takes the namespace's lock (MariaDB: on SQLite
    BEGIN IMMEDIATE holds the database for the whole write)."""
    real = rowsql.instance_items
    fired = threading.Event()

    def items(*args, **kwargs):
        rows = real(*args, **kwargs)
        if not fired.is_set():
            fired.set()
            assert _threads(lambda _: competitor(), 1) == []
        return rows

    monkeypatch.setattr(rowsql, "instance_items", items)


def test_rows_moved_after_prepare_write_again_under_the_lock(mysql_api, monkeypatch, caplog):
    api = mysql_api
    _instances(api, 1)
    item = api.ok("instance_get", namespace="cas", instance_name="i0",
                  value_format="detail")["data"]["i|port"]
    _race_after_prepare(monkeypatch, lambda: instances.update_items(
        "cas", "i0", {"i|port": 1}, "other"))
    caplog.set_level(logging.INFO, logger="butterfly_wuxing.store")
    done = instances.update_items("cas", "i0", {"i|port": 2}, "me")
    assert "runs again under the lock" in caplog.text
    assert done["revision"] == item["revision"] + 2  # after the competitor's
    assert api.ok("instance_get", namespace="cas", instance_name="i0")["data"]["i|port"] == 2
    with db.database.connection_context():
        rows = list(History.select(History.revision, History.value_new, History.user)
                    .where((History.namespace == "cas") & (History.cmd == "update"))
                    .order_by(History.revision).tuples())
    assert rows == [(item["revision"] + 1, "1", "other"), (item["revision"] + 2, "2", "me")]


def test_a_cas_overtaken_after_prepare_is_refused(mysql_api, monkeypatch):
    api = mysql_api
    _instances(api, 1)
    item = api.ok("instance_get", namespace="cas", instance_name="i0",
                  value_format="detail")["data"]["i|port"]
    _race_after_prepare(monkeypatch, lambda: instances.update_items(
        "cas", "i0", {"i|port": 1}, "other"))
    with pytest.raises(WuxingError) as lost:
        instances.update_items("cas", "i0", {"i|port": 2}, "me",
                               item_revisions={"i|port": item["revision"]})
    assert lost.value.stat == "ERR_ITEM_UPDATE_FAILED"
    assert api.ok("instance_get", namespace="cas", instance_name="i0")["data"]["i|port"] == 1
    assert api.ok("namespace_get", namespace="cas")["data"]["revision"] == item["revision"] + 1


@pytest.fixture
def api_alone(redis_server, db_url, fresh):
    """``api`` with WUXING_WRITE_GROUP_MAX=1: every value write commits alone."""
    with contextlib.contextmanager(fresh)(redis_server.url, db_url,
                                          WUXING_WRITE_GROUP_MAX="1") as api:
        yield api


def test_writers_committing_alone_get_ordered_revisions_and_complete_history(api_alone):
    test_concurrent_writers_get_ordered_revisions_and_complete_history(api_alone)


def _wait_for(condition, what: str) -> None:
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


def test_queued_writers_commit_as_one_group_and_a_lost_cas_fails_alone(api, monkeypatch):
    """Writers that queue while their namespace is locked are committed together, in one
    transaction - the leader's group, which they join once it holds the lock - each with
    its own revision (queue order) and history row; of two writers holding the same item
    revision the second loses its CAS alone - the others of its group commit, and the lost
    one takes no revision."""
    _instances(api, 4)
    item = api.ok("instance_get", namespace="cas", instance_name="i0",
                  value_format="detail")["data"]["i|port"]
    start = api.ok("namespace_get", namespace="cas")["data"]["revision"]
    started: list[int] = []  # each group's size when it waits for the lock, then after
    groups: list[int] = []
    real = store._commit_group

    def spy(namespace, direct, batch, more):
        started.append(len(batch))
        try:
            return real(namespace, direct, batch, more)
        finally:
            groups.append(len(batch))

    monkeypatch.setattr(store, "_commit_group", spy)
    gate, holding = threading.Event(), threading.Event()

    def hold(_: int) -> None:  # the namespace's lock, held until the gate opens
        store.run_locked("cas", lambda: (holding.set(), gate.wait(30)))

    outcome: dict[str, object] = {}

    def write(name: str, instance: str, value: int, revision: int | None) -> None:
        try:
            outcome[name] = instances.update_items(
                "cas", instance, {"i|port": value}, name,
                item_revisions=None if revision is None else {"i|port": revision})["revision"]
        except WuxingError as exc:
            outcome[name] = exc.stat

    writers = [("a", "i0", 5, item["revision"]), ("b", "i0", 6, item["revision"]),
               ("c", "i1", 7, None), ("d", "i2", 8, None)]

    def run(n: int) -> None:
        if n == 0:
            hold(n)
        elif n == 1:  # the first writer leads: it waits for the lock with a group of one
            holding.wait(30)
            write("lead", "i3", 9, None)
        else:
            _wait_for(lambda: started, "the leader's group of one")
            write(*writers[n - 2])

    def stage() -> None:  # the lock is released once the others queued behind the leader
        _wait_for(lambda: started, "the leader's group of one")
        group = store._groups[("cas", True)]
        _wait_for(lambda: len(group.queue) == len(writers), "the queued writers")
        gate.set()

    stager = threading.Thread(target=stage)
    stager.start()
    assert _threads(run, 2 + len(writers)) == []
    stager.join(30)
    # the leader waited for the lock alone; the writers queued meanwhile joined its group
    assert (started, groups) == ([1], [1 + len(writers)])
    assert outcome["lead"] == start + 1
    won = [name for name in ("a", "b") if outcome[name] != "ERR_ITEM_UPDATE_FAILED"]
    assert len(won) == 1, outcome  # one of the two with the same revision, not both
    done = sorted(outcome[name] for name in ("lead", *won, "c", "d"))
    assert done == list(range(start + 1, start + 5))
    assert api.ok("namespace_get", namespace="cas")["data"]["revision"] == start + 4
    with db.database.connection_context():
        rows = list(History.select(History.revision, History.user, History.value_new)
                    .where((History.namespace == "cas") & (History.revision > start))
                    .order_by(History.revision).tuples())
    assert [r for r, _, _ in rows] == done
    assert {user: value for _, user, value in rows} == {
        "lead": "9", won[0]: "5" if won[0] == "a" else "6", "c": "7", "d": "8"}
    port = api.ok("instance_get", namespace="cas", instance_name="i0")["data"]["i|port"]
    assert port == (5 if won[0] == "a" else 6)
