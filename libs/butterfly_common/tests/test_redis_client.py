"""The Redis client factory and the Lua helper, against a real redis-server."""

from __future__ import annotations

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from butterfly_common.redis_client import Script, make_redis
from butterfly_common.testing import RedisServer, free_port

INCR_BY = Script("return redis.call('INCRBY', KEYS[1], ARGV[1])", "incr_by")


def test_client_talks_resp2_and_decodes(redis_server):
    client = make_redis(redis_server.url)
    assert client.ping()
    client.set("bf:test:k", "v")
    assert client.get("bf:test:k") == "v"
    assert client.connection_pool.connection_kwargs["protocol"] == 2


def test_script_falls_back_to_eval_then_uses_evalsha(redis_server):
    client = make_redis(redis_server.url)
    client.script_flush()  # test-only: the server forgets every script
    client.delete("bf:test:n")
    assert not client.script_exists(INCR_BY.sha)[0]
    assert INCR_BY(client, ["bf:test:n"], [2]) == 2   # NOSCRIPT -> EVAL
    assert client.script_exists(INCR_BY.sha)[0]      # EVAL cached it
    assert INCR_BY(client, ["bf:test:n"], [3]) == 5   # EVALSHA


def test_script_needs_a_key(redis_server):
    with pytest.raises(ValueError, match="at least one key"):
        INCR_BY(make_redis(redis_server.url), [], [1])


def test_other_db_refused():
    with pytest.raises(ValueError, match="database 0"):
        make_redis("redis://127.0.0.1:6379/3")


def test_down_server_fails_fast_and_recovers():
    port = free_port()
    client = make_redis(f"redis://127.0.0.1:{port}/0", socket_timeout=1)
    with pytest.raises(RedisConnectionError):
        client.ping()
    with RedisServer(port):
        assert client.ping()
