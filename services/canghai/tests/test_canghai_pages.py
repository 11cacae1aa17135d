"""Console pages over HTTP: sorting and filtering, bad input as 4xx, the sampler's buckets."""

from __future__ import annotations

import re

from canghai_helpers import sign_in

from butterfly_canghai import queues
from butterfly_common.logs import current_reqid
from butterfly_common.mq import Broker
from butterfly_common.reqid import NO_REQID

TOPICS = ("/a/one", "/b/two", "/c/three")


def _topics(broker: Broker) -> None:
    for n, topic in enumerate(TOPICS):
        for i in range(n + 1):
            broker.publish(topic, {"i": i}, force=True)


def _order(html: str) -> list[str]:
    return re.findall(r'<tr data-topic="([^"]+)"', html)


def test_queues_sort_and_filter(client, broker) -> None:
    _topics(broker)
    sign_in(client, "vera")
    assert _order(client.get("/console/queues").text) == list(TOPICS)
    assert _order(client.get("/console/queues?sort=queued&desc=1").text) == list(TOPICS[::-1])
    rows = client.get("/console/queues/rows?q=TWO&sort=topic").text
    assert _order(rows) == ["/b/two"]
    assert 'hx-get="/console/queues/rows?q=TWO&amp;sort=topic&amp;desc=0"' in rows


def test_bad_input_is_a_4xx(client, broker) -> None:
    sign_in(client, "ada")
    assert client.get("/console/messages?topic=/a/one&status=nope").status_code == 400
    assert client.get("/console/messages?topic=bad%20topic").status_code == 400
    assert client.get("/console/message?id=NOPE").status_code == 404
    assert client.get("/console/messages?id=NOPE").status_code == 404
    assert client.get("/console/messages/purge?topic=/a/one&status=nope").status_code == 400
    assert client.get("/console/messages?topic=/a/one&page=x&size=-3").status_code == 200
    assert client.get("/console/lang/fr").status_code == 404


def test_login_keeps_the_whole_next_url(client) -> None:
    r = client.get("/console/messages?topic=/a/one&status=failed")
    assert r.headers["Location"] == ("/console/login?next=/console/messages%3Ftopic%3D/a/one"
                                     "%26status%3Dfailed")


def test_message_counts_strip(client, broker) -> None:
    _topics(broker)
    sign_in(client, "vera")
    html = client.get("/console/messages/counts?topic=/b/two&status=queued").text
    assert 'data-count="queued">Queued 2<' in html or 'data-count="queued">排队 2<' in html
    assert client.get("/console/messages/counts?topic=bad%20one").status_code == 400


def test_purge_confirm_shows_the_count(client, broker) -> None:
    _topics(broker)
    sign_in(client, "ada")
    html = client.get("/console/messages/purge?topic=/c/three&status=queued").text
    assert 'data-purge-count="3"' in html


def test_sampler_buckets(app, redis) -> None:
    from butterfly_canghai import sampler
    from butterfly_canghai.config import CanghaiConfig
    from butterfly_common.runtime import get_config

    broker = Broker(redis)
    broker.publish("/a/one", {}, force=True)
    s = sampler.Sampler(redis, get_config(CanghaiConfig))
    now = 1_800_000_000.0
    assert s.sample(now) is True
    assert s.sample(now) is False  # the same tick is sampled once across processes
    series = sampler.read_series(redis, 1, now)
    assert len(series["t"]) == 60 and series["queued"][-1] == 1
    assert series["processed"] == [0] * 60 and series["started"][-2] is None
    old = int(now // 60) * 60 - 2 * 86400
    redis.hset(sampler.series_key("queued"), str(old), 5)
    s.trim(int(now) - 86400)
    assert str(old) not in redis.hkeys(sampler.series_key("queued"))


def test_sampler_loop_samples_each_tick_and_stops_promptly(app_for, redis) -> None:
    import time

    from butterfly_canghai import sampler
    from butterfly_common.testing import wait_until

    app_for(CANGHAI_SAMPLE_SECONDS="0.2")
    Broker(redis).publish("/a/one", {}, force=True)
    stop = sampler.start_sampler(None)
    seen: set[str] = set()

    def ticks() -> int:
        # a tick key lives two sample periods: collect them as they come and go
        seen.update(redis.keys(f"{sampler.TICK_KEY}:*"))
        return len(seen)

    try:
        wait_until(lambda: ticks() >= 3, 10, what="three ticks sampled")
        # one field per minute: three ticks may straddle a minute boundary
        assert set(redis.hvals(sampler.series_key("queued"))) == {"1"}
    finally:
        started = time.monotonic()
        stop()
        assert time.monotonic() - started < 1.0


def test_queue_counters_from_metrics_text() -> None:
    from butterfly_canghai.sampler import queue_counters

    text = ('# TYPE butterfly_requests_total counter\n'
            'butterfly_requests_total{method="QUEUE",route="/a",stat="OK"} 7.0\n'
            'butterfly_requests_total{method="QUEUE",route="/a",stat="ERR_X"} 2.0\n'
            'butterfly_requests_total{method="GET",route="/a",stat="OK"} 100.0\n')
    assert queue_counters(text) == (9.0, 2.0)


def test_topic_counts_through_twemproxy_with_cold_shards(nutcracker) -> None:
    """Twemproxy spreads the topics over two shards that never saw the script: every
    count still comes back right, in a few pipelines rather than one call per topic."""
    from butterfly_canghai import queues
    from butterfly_common.redis_client import make_redis

    client = make_redis(nutcracker.url)
    broker = Broker(client)
    topics = [f"/spread/t{i:02d}" for i in range(40)]
    for n, topic in enumerate(topics):
        for _ in range(n % 4 + 1):
            broker.publish(topic, {}, force=True)
    broker.heartbeat("w1", topics[:3])
    for port in nutcracker.shard_ports:
        make_redis(f"redis://127.0.0.1:{port}/0").script_flush()
    rows = {r.topic: r for r in queues.topic_counts(broker)}
    assert [rows[t].counts["queued"] for t in topics] == [n % 4 + 1 for n in range(40)]
    assert [rows[t].consumers for t in topics[:4]] == [1, 1, 1, 0]


def test_a_pages_reqid_ends_with_the_page(client) -> None:
    """The reqid a page sets for its logs and calls does not outlive it in the thread."""
    reply = client.get("/console/login", headers={"x-reqid": "0E30ABCDEF012345"})
    assert reply.status_code == 200
    assert current_reqid.get() == NO_REQID


def test_messages_show_priority_and_sort_queued_by_it(client, broker) -> None:
    low = broker.publish("/p/prio", {"n": "low"}, force=True, priority=-7).msg_id
    plain = broker.publish("/p/prio", {"n": "plain"}, force=True).msg_id
    high = broker.publish("/p/prio", {"n": "high"}, force=True, priority=9).msg_id
    sign_in(client, "vera")

    def rows(query: str) -> list[tuple[str, str]]:
        html = client.get(f"/console/messages/rows?topic=/p/prio&{query}").text
        return re.findall(r'<a href="/console/message\?id=([0-9A-F]+)">.*?'
                          r'data-field="priority">(-?\d+)</td>', html, re.S)

    assert rows("status=queued&order=priority") == [(high, "9"), (plain, "0"), (low, "-7")]
    assert rows("status=queued&order=newest") == [(low, "-7"), (plain, "0"), (high, "9")]
    page = client.get("/console/messages?topic=/p/prio&status=queued").text
    assert 'order=priority">Priority' in page or 'order=priority">优先级' in page
    # the topics' counts (one script per topic) see every priority's list
    (row,) = [r for r in queues.topic_counts(broker) if r.topic == "/p/prio"]
    assert row.counts["queued"] == 3
    # priority order is the queue's own: other statuses keep their time order
    assert client.get("/console/messages/rows?topic=/p/prio&status=failed&order=priority"
                      ).status_code == 200


def test_message_page_shows_priority_and_dedup_key(client, broker) -> None:
    msg_id = broker.publish("/p/prio", {}, force=True, priority=12, dedup_key="inv-9",
                            dedup_mode="throttle", dedup_ttl=60).msg_id
    sign_in(client, "vera")
    html = client.get(f"/console/message?id={msg_id}").text
    assert re.search(r'data-field="priority">12</dd>', html)
    assert 'data-field="dedup">inv-9 (throttle)</dd>' in html
