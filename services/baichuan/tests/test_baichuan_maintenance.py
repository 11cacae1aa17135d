"""The maintenance thread (reap, prune, gauges), the config checks and the service entry."""

from __future__ import annotations

import time

import pytest
from baichuan_helpers import TOPIC
from prometheus_client import REGISTRY

from butterfly_baichuan.config import check_config, config_of
from butterfly_baichuan.maintenance import Maintenance, run_once, start_maintenance
from butterfly_common.mq import Broker
from butterfly_common.mq.keys import TopicKeys
from butterfly_common.service import get_service
from butterfly_common.settings import SettingsError, load_settings
from butterfly_common.testing import wait_until


def gauge(topic, status):
    return REGISTRY.get_sample_value("butterfly_queue_messages",
                                     {"topic": topic, "status": status})


def test_run_once_reaps_prunes_and_sets_gauges(redis):
    short = Broker(redis, lease=0.1)  # a consumer whose lease runs out at once
    short.heartbeat("w-gone", [TOPIC])
    for n in range(3):
        short.publish(TOPIC, {"n": n})
    claimed = short.claim(TOPIC, "w-gone", 1)
    assert len(claimed) == 1
    deadline_ms = redis.zscore(TopicKeys.of(TOPIC).started, claimed[0].id)

    def server_ms():
        sec, usec = redis.time()
        return sec * 1000 + usec // 1000

    wait_until(lambda: server_ms() > deadline_ms, 5, what="the lease to run out")
    report = run_once(Broker(redis), prune_after=0.05)
    assert report.topics == 1 and report.reaped == 1 and report.pruned == 1
    assert gauge(TOPIC, "queued") == 3 and gauge(TOPIC, "started") == 0
    assert gauge(TOPIC, "failed") == 0
    assert Broker(redis).workers() == []


def test_thread_runs_passes_and_stops_promptly(redis, redis_server):
    broker = Broker(redis, lease=0.1)
    broker.heartbeat("w1", [TOPIC])
    broker.publish(TOPIC, {})
    broker.claim(TOPIC, "w1")
    settings = load_settings({"BUTTERFLY_REDIS_URL": redis_server.url,
                              "BAICHUAN_MAINTENANCE_INTERVAL": "0.1"})
    stop = start_maintenance(settings)
    try:
        # the lease ran out and nobody reaps but maintenance: it comes back to the queue
        wait_until(lambda: broker.counts(TOPIC)["queued"] == 1, 5, what="reaped by thread")
        wait_until(lambda: gauge(TOPIC, "queued") == 1, 5, what="gauge updated")
    finally:
        started = time.monotonic()
        stop()
        assert time.monotonic() - started < 1.0


def test_thread_survives_redis_errors(redis):
    class Down(Broker):
        def topics(self):
            raise ConnectionError("redis down")

    runner = Maintenance(Down(redis), interval=0.05, prune_after=600).start()
    try:
        wait_until(lambda: runner.passes >= 3, 5, what="passes despite errors")
    finally:
        runner.stop()
    assert not runner._thread.is_alive()


def test_config_defaults_and_errors():
    conf = config_of(load_settings({}))
    assert (conf.max_message_bytes, conf.max_wait, conf.maintenance_interval,
            conf.prune_workers_after) == (256 * 1024, 60.0, 15.0, 600.0)
    custom = config_of(load_settings({"BAICHUAN_MAX_MESSAGE_BYTES": "1024",
                                      "BAICHUAN_MAX_WAIT": "5"}))
    assert (custom.max_message_bytes, custom.max_wait) == (1024, 5.0)
    for name, value in (("BAICHUAN_MAX_MESSAGE_BYTES", "lots"),
                        ("BAICHUAN_MAX_MESSAGE_BYTES", "0"), ("BAICHUAN_MAX_WAIT", "-1"),
                        ("BAICHUAN_MAINTENANCE_INTERVAL", "nan")):
        with pytest.raises(SettingsError, match=name):
            check_config(load_settings({name: value}))


def test_service_entry_point():
    service = get_service("baichuan")
    assert service.port == 4300 and service.handlers == "butterfly_baichuan.handlers"
    assert start_maintenance in service.starters and service.setup is check_config
