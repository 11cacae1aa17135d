"""RawPipeline: the same replies as redis-py's pipeline, on Redis and through Twemproxy."""

from __future__ import annotations

import pytest
from redis.exceptions import NoScriptError, ResponseError

from butterfly_common.redis_client import RawPipeline, make_redis, pipeline


@pytest.fixture
def client(redis_url):
    c = make_redis(redis_url)
    yield c
    c.close()


def test_replies_in_order_with_errors_in_place(client):
    pipe = pipeline(client)
    assert isinstance(pipe, RawPipeline)
    pipe.set("rp:a", "1", px=60_000)
    pipe.execute_command("EVALSHA", "0" * 40, 1, "rp:a")  # unknown script
    pipe.zadd("rp:z", {"m": 2}, nx=True)
    pipe.execute_command("INCR", "rp:z")  # wrong type
    pipe.execute_command("GET", "rp:a")
    replies = pipe.execute(raise_on_error=False)
    assert replies[0] == "OK"
    assert isinstance(replies[1], NoScriptError)
    assert replies[2] == 1
    assert isinstance(replies[3], ResponseError)
    assert replies[4] == "1"  # decoded like the client's other replies
    assert 0 < client.pttl("rp:a") <= 60_000
    assert client.zscore("rp:z", "m") == 2
    # the connection went back to the pool in a clean state: the next call works
    assert client.get("rp:a") == "1"


def test_raise_on_error_raises_the_first_error(client):
    pipe = pipeline(client).execute_command("INCR", "rp:str")
    client.set("rp:str", "x")
    with pytest.raises(ResponseError):
        pipe.execute()


def test_empty_pipeline_sends_nothing(client):
    assert pipeline(client).execute() == []
