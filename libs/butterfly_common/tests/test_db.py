"""The db module against SQLite and the MariaDB on 127.0.0.1:3306."""

from __future__ import annotations

import json
import os
import threading

import pymysql
import pytest

from butterfly_common import db
from butterfly_common.db import _with_defaults, create_tables, database, ping_db

MARIADB = "mysql://root@127.0.0.1:3306/test"


def _mariadb_up() -> bool:
    try:
        pymysql.connect(host="127.0.0.1", port=3306, user="root", password="",
                        database="test").close()
        return True
    except pymysql.MySQLError:
        return False


@pytest.fixture(params=["sqlite", "mariadb"])
def db_env(request, tmp_path):
    if request.param == "mariadb":
        assert _mariadb_up(), "MariaDB must answer on 127.0.0.1:3306 (root, db test)"
        yield {"BUTTERFLY_DB_URL": MARIADB}
    else:
        yield {"BUTTERFLY_DB_URL": f"sqlite:///{tmp_path / 'db' / 'test.db'}"}


def test_handlers_use_and_release_the_db(make_app, db_env):
    from sample_handlers.store import Note

    app = make_app(**db_env)
    client = app.test_client()
    database.drop_tables([Note], safe=True)
    create_tables([Note])
    try:
        ping_db()
        for i in range(25):
            added = client.post("/store/add", json={"text": f"n{i}"})
            assert json.loads(added.data)["stat"] == "OK"
            assert database.is_closed()  # closed (back in the pool) after every call
        body = json.loads(client.get("/store/notes?page_index=2&page_size=10").data)
        assert body["data"]["total"] == 25
        assert [n["text"] for n in body["data"]["list"]] == [f"n{i}" for i in range(10, 20)]
        if "mysql" in db_env["BUTTERFLY_DB_URL"]:
            assert isinstance(database.obj, db.peewee.Database)
            assert type(database.obj).__name__ == "PooledMySQLDatabase"
            assert len(database.obj._in_use) == 0
            assert len(database.obj._connections) >= 1  # reused, not reopened per call
    finally:
        database.drop_tables([Note], safe=True)
        database.close()


def test_pool_defaults_are_added():
    url = _with_defaults("mysql://u:p@h:3306/d")
    assert url.startswith("mysql+pool://u:p@h:3306/d?")
    assert "max_connections=32" in url and "stale_timeout=300" in url
    assert "max_connections=5" in _with_defaults("mysql://h/d?max_connections=5")
    assert "max_connections=32" not in _with_defaults("mysql://h/d?max_connections=5")
    assert _with_defaults("sqlite:///x.db") == "sqlite:///x.db"


def test_sqlite_default_is_wal(tmp_path):
    database_ = db.open_database(f"sqlite:///{tmp_path / 'a' / 'b.db'}")
    database_.connect()
    assert database_.execute_sql("PRAGMA journal_mode").fetchone()[0] == "wal"
    database_.close()


def test_a_sqlite_file_is_pooled_across_calls_and_threads(tmp_path):
    """Closing returns the connection (pragmas set once); another thread may take it."""
    database_ = db.open_database(f"sqlite:///{tmp_path / 'p.db'}")
    database_.connect()
    first = database_.connection()
    database_.close()
    seen = []

    def other_thread():
        database_.connect()
        seen.append(database_.connection())
        seen.append(database_.execute_sql("PRAGMA foreign_keys").fetchone()[0])
        database_.close()

    thread = threading.Thread(target=other_thread)
    thread.start()
    thread.join(10)
    assert seen == [first, 1]


def test_pooled_connections_do_not_cross_a_fork(tmp_path):
    """The parent's idle connection is closed before the fork: the child writes with a
    connection of its own, and the parent opens a new one after."""
    database_ = db.init_db(f"sqlite:///{tmp_path / 'f.db'}")
    database_.connect()
    database_.execute_sql("CREATE TABLE t (a INTEGER)")
    before = database_.connection()
    database_.close()
    pid = os.fork()
    if pid == 0:  # the child: exit code 0 only when its own connection works
        ok = False
        try:
            database_.connect()
            ok = database_.connection() is not before
            database_.execute_sql("INSERT INTO t VALUES (1)")
            database_.close()
        finally:
            os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    database_.connect()
    assert database_.connection() is not before
    assert database_.execute_sql("SELECT COUNT(*) FROM t").fetchone()[0] == 1
    database_.close()
