"""The consumer runtime against a real redis-server and through nutcracker."""

from __future__ import annotations

import time
from pathlib import Path

from butterfly_common import mq
from butterfly_common.logs import access_log
from butterfly_common.mq import FAILED, FINISHED, QUEUED, Broker
from butterfly_common.testing import wait_until


def access_line_of(log_dir: Path, msg_id: str) -> str | None:
    for handler in access_log.handlers:
        handler.flush()
    path = log_dir / "acc.log"
    text = path.read_text() if path.exists() else ""
    return next((line for line in text.splitlines() if msg_id in line), None)


def finished(broker: Broker, msg_id: str):
    message = broker.get(msg_id)
    return message if message and message.status in (FINISHED, FAILED) else None


def test_topics_exclude_admin_and_http_only(sample_consumers):
    _, start, _ = sample_consumers
    consumer = start()
    assert "/jobs/add" in consumer.topics and "/kinds/echo" in consumer.topics
    assert "/jobs/admin_only" not in consumer.topics
    assert "/jobs/http_only" not in consumer.topics
    assert "/kinds/raw_int" not in consumer.topics and "/kinds/fetch" not in consumer.topics


def test_message_runs_through_the_gateway(sample_consumers):
    broker, start, log_dir = sample_consumers
    start()
    result = broker.publish("/jobs/add", {"a": "2", "b": 3}, reqid="00000000CAFEF00D")
    message = wait_until(lambda: finished(broker, result.msg_id), 10, what="finished")
    assert message.status == FINISHED
    assert message.result == {"stat": "OK", "sum": 5, "reqid": "00000000CAFEF00D",
                              "method": "QUEUE"}
    assert message.attempts == 1 and message.cost > 0
    line = wait_until(lambda: access_line_of(log_dir, result.msg_id), 10,
                      what="access line")  # written just after the result is stored
    fields = line.split("\t")
    assert fields[3:7] == ["-", "00000000CAFEF00D", "QUEUE", "/jobs/add"]
    assert "stat:OK" in fields and "params:a=2;b=3" in fields


def test_heartbeat_carries_busy_and_counts(sample_consumers):
    """The console's consumers page shows busy/idle threads and processed/failed counts."""
    broker, start, _ = sample_consumers
    consumer = start(threads=2)
    ok = broker.publish("/jobs/add", {"a": 1, "b": 2}).msg_id
    bad = broker.publish("/jobs/add", {"a": 1}).msg_id  # ERR_BAD_PARAMS: failed
    for msg_id in (ok, bad):
        wait_until(lambda m=msg_id: finished(broker, m), 10, what="done")
    wait_until(lambda: consumer.processed == 2, 10, what="both counted")
    consumer._heartbeat()
    (row,) = [w for w in broker.workers() if w["id"] == consumer.worker_id]
    assert row["info"]["processed"] == 2 and row["info"]["failed"] == 1
    assert row["info"]["busy"] == 0 and row["info"]["threads"] == 2


def test_bad_params_fail_at_once_without_retry(sample_consumers):
    broker, start, _ = sample_consumers
    start()
    result = broker.publish("/jobs/add", {"a": 1, "c": 2}, max_retries=5)
    message = wait_until(lambda: finished(broker, result.msg_id), 10)
    assert message.status == FAILED and message.attempts == 1
    assert message.result == {"stat": "ERR_BAD_PARAMS"}
    assert "missing: b" in message.error and "unknown: c" in message.error


def test_exceptions_retry_with_backoff_then_succeed_or_dead_letter(sample_consumers):
    broker, start, _ = sample_consumers
    start()
    key = str(time.time_ns())
    ok = broker.publish("/jobs/flaky", {"key": key, "failures": 2}, max_retries=3)
    message = wait_until(lambda: finished(broker, ok.msg_id), 15)
    assert message.status == FINISHED and message.attempts == 3
    assert message.result == {"stat": "OK", "calls": 3}
    dead = broker.publish("/jobs/flaky", {"key": key + "x", "failures": 9}, max_retries=1)
    message = wait_until(lambda: finished(broker, dead.msg_id), 15)
    assert message.status == FAILED and message.attempts == 2
    assert "RuntimeError: failure 2" in message.error
    assert message.result == {"stat": "ERR_SERVER_EXCEPTION"}


def test_timeout_interrupts_the_handler(sample_consumers):
    broker, start, _ = sample_consumers
    start()
    result = broker.publish("/jobs/slow", {"seconds": 30}, timeout=0.5)
    started = time.monotonic()
    message = wait_until(lambda: finished(broker, result.msg_id), 10)
    assert time.monotonic() - started < 8
    assert message.status == FAILED and "timeout after 0.5s" in message.error


def test_long_handler_keeps_its_lease(sample_consumers):
    broker, start, _ = sample_consumers
    start()
    # lease is 1 s: without extension, reaping would hand it out again mid-run
    result = broker.publish("/jobs/slow", {"seconds": 2.5}, timeout=10)
    message = wait_until(lambda: finished(broker, result.msg_id), 15)
    assert message.status == FINISHED and message.attempts == 1


def test_graceful_stop_hands_prefetched_back_to_the_front(sample_consumers):
    broker, start, _ = sample_consumers
    from sample_handlers.jobs import STARTED

    STARTED.clear()
    first = broker.publish("/jobs/slow", {"seconds": 0.6}, force=True)
    queued = [broker.publish("/jobs/add", {"a": i, "b": 0}, force=True).msg_id
              for i in range(6)]
    consumer = start(threads=1, max_idle=0.01)
    wait_until(STARTED.is_set, 10)
    wait_until(lambda: broker.counts("/jobs/add")["started"] >= 1, 5, what="prefetch")
    consumer.stop()
    assert broker.get(first.msg_id).status == FINISHED  # in flight: allowed to finish
    add_ids = [m.id for m in broker.list("/jobs/add", QUEUED, page_size=100,
                                         newest_first=False)[1]]
    assert broker.counts("/jobs/add")["started"] == 0
    # what was prefetched went back in front of what was never claimed, in order
    assert add_ids == [i for i in queued if i in add_ids]
    assert all(broker.get(i).attempts == 0 for i in add_ids)


def test_client_publish_get_wait(sample_consumers):
    _, start, _ = sample_consumers
    start()
    result = mq.publish("/jobs/add", {"a": 40, "b": 2})
    message = mq.wait(result.msg_id, timeout=10)
    assert message.status == FINISHED and message.result["sum"] == 42
    assert mq.get(result.msg_id).id == result.msg_id
    assert mq.get("0" * 24) is None


def test_queue_access_log_masks_nested_secrets(sample_consumers):
    broker, start, log_dir = sample_consumers
    start()
    data = {"a": "x", "opts": {"token": "s3cret", "page": [{"api_key": "k3y"}], "n": 1}}
    result = broker.publish("/kinds/echo", data)
    message = wait_until(lambda: finished(broker, result.msg_id), 10)
    assert message.result["opts"] == data["opts"]  # the handler saw the real values
    line = wait_until(lambda: access_line_of(log_dir, result.msg_id), 10, what="access line")
    assert "s3cret" not in line and "k3y" not in line
    assert "'token': '***'" in line and "'api_key': '***'" in line and "'n': 1" in line
