"""Issue 12, defect 1: no message kills a consumer thread; a thread that dies anyway is
replaced and counted; a consumer missing threads shows in /readyz and in ``workers``."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from butterfly_common import consumer as consumer_mod
from butterfly_common.consumer import Consumer
from butterfly_common.discovery import discover
from butterfly_common.gateway import Gateway
from butterfly_common.logs import configure_logging
from butterfly_common.mq import FAILED, FINISHED, Broker, ErrorKind
from butterfly_common.protocol import ProtocolSettings
from butterfly_common.redis_client import make_redis
from butterfly_common.runtime import configure
from butterfly_common.settings import load_settings
from butterfly_common.testing import wait_until

from fixtures_app import SAMPLE


def deep(levels: int) -> dict:
    value: dict = {"leaf": 1}
    for _ in range(levels):
        value = {"a": value}
    return value


def restarts(role: str = "run") -> float:
    return REGISTRY.get_sample_value("butterfly_consumer_thread_restarts_total",
                                     {"role": role}) or 0.0


@pytest.fixture
def setup(redis_server, tmp_path):
    settings = load_settings({"BUTTERFLY_REDIS_URL": redis_server.url,
                              "BUTTERFLY_LOG_DIR": str(tmp_path / "log"),
                              "BUTTERFLY_DATA_DIR": str(tmp_path / "data")})
    configure(settings)
    configure_logging(settings, "sample")
    client = make_redis(redis_server.url)
    client.flushall()
    routes = discover(SAMPLE.handlers)
    gateway = Gateway(ProtocolSettings(), settings.data_dir)
    broker = Broker(client, lease=1.0, min_backoff=0.05, max_backoff=0.2)
    # what an old publisher (before the nesting limit) could store
    legacy = Broker(client)
    legacy.max_depth = 100_000
    consumers: list[Consumer] = []

    def start(**options) -> Consumer:
        options.setdefault("threads", 4)
        options.setdefault("max_idle", 0.05)
        consumer = Consumer("sample", routes, gateway, broker, **options).start()
        consumers.append(consumer)
        return consumer

    yield broker, legacy, start
    for consumer in consumers:
        consumer.stop()


def done(broker: Broker, msg_id: str):
    message = broker.get(msg_id)
    return message if message and message.status in (FINISHED, FAILED) else None


def test_defect_01_poison_message_does_not_kill_consumer_threads(setup):
    broker, legacy, start = setup
    consumer = start(threads=4)
    before = restarts()
    # bad params (logged with their values) and a handler echoing the deep value back
    poison = [legacy.publish("/jobs/add", {"a": deep(600), "b": 1}).msg_id for _ in range(10)]
    poison += [legacy.publish("/kinds/echo", {"a": "x", "anything": deep(600)}).msg_id
               for _ in range(10)]
    ordinary = [broker.publish("/jobs/add", {"a": i, "b": 1}).msg_id for i in range(10)]
    for msg_id in ordinary:
        message = wait_until(lambda m=msg_id: done(broker, m), 30, what="ordinary message")
        assert message.status == FINISHED
    for msg_id in poison:
        assert wait_until(lambda m=msg_id: done(broker, m), 30, what="poison message")
    state = consumer.health()
    assert state == {"healthy": True, "threads_alive": 4 + 3, "threads_expected": 4 + 3,
                     "thread_restarts": 0}
    assert restarts() == before
    assert broker.get(poison[0]).status == FAILED  # bad params: dead-lettered at once


def test_defect_01_unstorable_result_fails_the_message_not_the_thread(setup, monkeypatch):
    broker, _, start = setup
    consumer = start(threads=1)
    real_complete = broker.complete_many

    def broken(done):  # one runner: a batch of one
        if any(msg.data.get("a") == 13 for msg, _, _ in done):
            raise RecursionError("maximum recursion depth exceeded")
        return real_complete(done)

    monkeypatch.setattr(broker, "complete_many", broken)
    bad = broker.publish("/jobs/add", {"a": 13, "b": 0}).msg_id
    good = broker.publish("/jobs/add", {"a": 1, "b": 0}).msg_id
    assert wait_until(lambda: done(broker, good), 20).status == FINISHED
    failed = wait_until(lambda: done(broker, bad), 20)
    assert failed.status == FAILED and "could not be stored: RecursionError" in failed.error
    assert failed.error_kind == ErrorKind.UNSTORABLE
    assert consumer.health()["healthy"]


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_defect_01_dead_thread_is_replaced_and_counted(setup, monkeypatch):
    broker, _, start = setup
    consumer = start(threads=2)
    before = restarts()
    real = consumer.process
    calls = []

    def dying(msg):
        calls.append(msg.id)
        if len(calls) == 1:
            raise SystemExit("a thread dies of something nobody contains")
        real(msg)

    monkeypatch.setattr(consumer, "process", dying)
    first = broker.publish("/jobs/add", {"a": 1, "b": 1}).msg_id
    wait_until(lambda: consumer.restarts == 1, 10, what="thread replaced")
    assert restarts() == before + 1
    wait_until(lambda: consumer.health()["healthy"], 10, what="healthy again")
    # the message the dead thread held comes back once its lease (1 s) lapses
    assert wait_until(lambda: done(broker, first), 20).status == FINISHED
    later = broker.publish("/jobs/add", {"a": 2, "b": 2}).msg_id
    assert wait_until(lambda: done(broker, later), 20).status == FINISHED


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_defect_01_missing_threads_show_in_readyz_and_workers(setup, monkeypatch, make_app):
    from butterfly_common import health
    broker, _, start = setup
    monkeypatch.setattr(consumer_mod, "SUPERVISE_EVERY", 3600.0)  # nobody replaces
    consumer = start(threads=2)
    monkeypatch.setattr(consumer, "process", lambda msg: (_ for _ in ()).throw(SystemExit()))
    broker.publish("/jobs/add", {"a": 1, "b": 1})
    wait_until(lambda: not consumer.health()["healthy"], 10, what="a runner gone")
    assert consumer.health()["threads_alive"] < consumer.health()["threads_expected"]
    problems = health.problems()
    assert any("threads alive" in p for p in problems.values()), problems
    ready = make_app().test_client().get("/readyz")  # the same redis-server
    assert ready.status_code == 503 and "consumer" in ready.headers["x-reason"]
    # the keeper reports the change at once: baichuan's ``workers`` says not alive, and
    # the topics are no longer vouched for
    record = wait_until(lambda: next((w for w in broker.workers()
                                      if w["id"] == consumer.worker_id
                                      and not w["alive"]), None), 10, what="not alive")
    assert record["info"]["healthy"] is False
    consumer.stop()
    assert not any("threads alive" in p for p in health.problems().values())
