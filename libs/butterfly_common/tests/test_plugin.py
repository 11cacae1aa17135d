"""The butterfly pytest plugin's fixtures, as any package's tests get them."""

from __future__ import annotations

import requests

from butterfly_common.redis_client import make_redis


def test_redis_and_nutcracker(redis_server, nutcracker):
    assert make_redis(redis_server.url).ping()
    proxy = make_redis(nutcracker.url)
    proxy.set("plugin:k", "v")
    assert proxy.get("plugin:k") == "v" and len(nutcracker.shard_ports) == 2


def test_redis_starts_empty(redis_server, request):
    make_redis(redis_server.url).set("plugin:left-over", "1")
    redis = request.getfixturevalue("redis")  # (this package's conftest shadows `broker`)
    assert redis.dbsize() == 0 and redis.connection_pool.connection_kwargs["port"] == \
        redis_server.port


def test_mariadb_database(mariadb_database):
    import pymysql

    assert mariadb_database.startswith("mysql://root@127.0.0.1:3306/bf_t_")
    conn = pymysql.connect(host="127.0.0.1", port=3306, user="root",
                           database=mariadb_database.rsplit("/", 1)[1])
    conn.close()


def test_service_client(service_client):
    client = service_client("baichuan", BAICHUAN_MAX_WAIT="0.1")
    assert client.get("/healthz").get_json()["service"] == "baichuan"
    body = client.get("/baichuan/topics").get_json()
    assert body["stat"] == "OK"


def test_serve_process_and_callee(serve_process, callee):
    core = serve_process("core", BUTTERFLY_WORKERS="1")
    assert requests.get(f"{core.url}/healthz", timeout=5).json()["service"] == "core"
    requests.post(f"{callee.url}/x/y?stat=ERR_Q&status=409", json={"a": 1}, timeout=5)
    [call] = callee.snapshot()
    assert (call["path"], call["query"], call["body"]) == ("/x/y", {"stat": "ERR_Q",
                                                                    "status": "409"},
                                                           '{"a": 1}')
