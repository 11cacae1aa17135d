"""``/baichuan/bulk`` in parts (``max_steps`` + ``cursor``) on every topology (plain Redis,
Twemproxy over two shards, Redis Cluster): a run in parts of one step acts on exactly the
messages a one-shot run acts on, each acting part is audited with the run's id, and a
garbled, forged or mismatched cursor is a 400 that changes nothing."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from baichuan_helpers import ADMIN, OPERATOR, make_client, refused

from butterfly_common.mq import Broker
from butterfly_common.redis_client import make_redis
from butterfly_common.testing import TOPOLOGIES, queue_store

ONE_SHOT = "/bulkparts/oneshot"
PARTS = "/bulkparts/parts"


@pytest.fixture(scope="module", params=TOPOLOGIES)
def store_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """The queue's store, once per topology."""
    with queue_store(request.param) as url:
        yield url


@pytest.fixture
def store(tmp_path, store_url) -> Iterator[tuple[Any, Broker]]:
    client = make_redis(store_url)
    broker = Broker(client)
    for topic in (ONE_SHOT, PARTS):
        broker.purge(topic, "all")
    yield make_client(tmp_path, store_url), broker
    for topic in (ONE_SHOT, PARTS):
        broker.purge(topic, "all")
    client.close()


def dead_letters(broker: Broker, topic: str, errors: list[str]) -> None:
    """One dead letter per error text, ids m0, m1, ... (the same ids on every topic)."""
    for n in range(len(errors)):
        broker.publish(topic, {"n": n}, msg_id=f"m{n}", force=True)
    claimed = broker.claim(topic, "w1", len(errors))
    assert len(claimed) == len(errors)
    for msg in claimed:
        assert broker.fail(msg, errors[int(msg.id[1:])], retry=False) == "failed"


def queued(broker: Broker, topic: str, n: int) -> None:
    """``n`` queued messages over three priorities and two concurrency groups."""
    for i in range(n):
        group = ("g1", "g2", None)[i % 3]
        broker.publish(topic, {"n": i}, msg_id=f"m{i}", force=True, priority=(i % 4) - 1,
                       group=group)


def statuses(broker: Broker, topic: str, n: int) -> dict[str, str]:
    return {f"m{i}": (m.status if m else "gone") + (f"/{m.error_kind}" if m and m.error_kind
                                                     else "")
            for i, m in enumerate(broker.get_many([(f"m{i}", topic) for i in range(n)]))}


def bulk(client: Any, topic: str, headers: dict = ADMIN, **args: Any) -> Any:
    return client.post("/baichuan/bulk", json={"topic": topic, **args}, headers=headers)


def in_parts(client: Any, topic: str, cursor: str | None = None,
             **args: Any) -> list[dict[str, Any]]:
    """Every part of one run (from ``cursor``), max_steps=1 each, until done."""
    answers: list[dict[str, Any]] = []
    while True:
        body = bulk(client, topic, max_steps=1, cursor=cursor, **args).get_json()
        assert body["stat"] == "OK", body
        answers.append(body)
        if body["done"]:
            assert body["cursor"] is None
            return answers
        cursor = body["cursor"]
        assert isinstance(cursor, str) and cursor
        assert len(answers) < 100, "the walk never ends"


CASES = {
    "requeue-failed-by-error": (
        lambda b, t: dead_letters(b, t, ["db timeout", "KeyError", "db down", "boom",
                                         "db timeout", "x", "db", "KeyError", "db"]),
        {"action": "requeue", "status": "failed", "error": "db", "step": 2}, 9),
    "delete-failed-all": (
        lambda b, t: dead_letters(b, t, ["e"] * 7),
        {"action": "delete", "status": "failed", "step": 3}, 7),
    "cancel-queued-priorities-and-groups": (
        lambda b, t: queued(b, t, 11),
        {"action": "cancel", "status": "queued", "step": 2}, 11),
}


@pytest.mark.parametrize("case", list(CASES))
def test_parts_of_one_step_act_as_one_shot(store, caplog, case: str) -> None:
    client, broker = store
    make, args, n = CASES[case]
    for topic in (ONE_SHOT, PARTS):
        make(broker, topic)
    assert statuses(broker, ONE_SHOT, n) == statuses(broker, PARTS, n)

    preview = in_parts(client, PARTS, dry_run=True, **args)
    one = bulk(client, ONE_SHOT, **args).get_json()
    assert one["stat"] == "OK" and "cursor" not in one and "done" not in one  # as before
    assert one["acted"] > 0
    with caplog.at_level(logging.WARNING, logger="butterfly.baichuan.audit"):
        parts = in_parts(client, PARTS, **args)

    # the same messages acted on, the same way
    assert statuses(broker, PARTS, n) == statuses(broker, ONE_SHOT, n)
    assert sum(p["acted"] for p in parts) == one["acted"] == sum(p["matched"] for p in preview)
    assert sum(p["scanned"] for p in parts) == one["scanned"]
    assert len(parts) > 2 and all(p["steps"] == 1 for p in parts)
    assert [p["part"] for p in parts] == list(range(1, len(parts) + 1))
    runs = {p["run"] for p in parts}
    assert len(runs) == 1 and len(preview) > 1
    (run,) = runs
    audit = [r.getMessage() for r in caplog.records
             if r.name == "butterfly.baichuan.audit" and f" {PARTS} " in r.getMessage()]
    assert len(audit) == len(parts)
    assert all(f"run {run} part {i}" in line for i, line in enumerate(audit, 1))
    assert audit[-1].endswith(", done") and all(a.endswith("more to come") for a in audit[:-1])


def test_a_mismatched_or_garbled_cursor_is_refused(store) -> None:
    client, broker = store
    dead_letters(broker, PARTS, ["db"] * 5)
    dead_letters(broker, ONE_SHOT, ["db"] * 5)
    args = {"action": "requeue", "status": "failed", "step": 1}
    first = bulk(client, PARTS, max_steps=1, **args).get_json()
    assert (first["stat"], first["acted"], first["done"]) == ("OK", 1, False)
    cursor = first["cursor"]
    before = (broker.counts(PARTS), broker.counts(ONE_SHOT))
    garbled = cursor[:-3] + ("AAA" if cursor[-3:] != "AAA" else "BBB")
    for topic, extra in [
            (ONE_SHOT, {}),  # another topic
            (PARTS, {"error": "db"}),  # another filter
            (PARTS, {"since": 1}),
            (PARTS, {"action": "delete"}),  # another action
            (PARTS, {"dry_run": True}),  # a dry run's walk is not the act's
            (PARTS, {"cursor": garbled}),
            (PARTS, {"cursor": "!!not base64!!"}),
            (PARTS, {"cursor": cursor + "x" * 3000})]:
        body = bulk(client, topic, max_steps=1, **{**args, "cursor": cursor, **extra})
        refused(body, 400, "ERR_BAD_PARAMS", "cursor")
    assert (broker.counts(PARTS), broker.counts(ONE_SHOT)) == before
    # the right cursor still continues the run
    rest = in_parts(client, PARTS, cursor=cursor, **args)
    assert sum(p["acted"] for p in rest) == 4 and broker.counts(PARTS)["failed"] == 0
    assert {p["run"] for p in rest} == {first["run"]}


def _forge(body: Any) -> str:
    raw = json.dumps(body).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


GOOD = {"v": 1, "run": "0123456789abcdef", "scope": "x", "part": 1, "t0": 1_700_000_000_000,
        "bound": "", "prio": 1000, "anchor": "", "score": ""}


@pytest.mark.parametrize("cursor,word", [
    ("", None),  # empty: the first part (not refused)
    ("%%%", "malformed"),
    (base64.urlsafe_b64encode(b"\xff\xfe").decode(), "malformed"),
    (_forge([1, 2, 3]), "malformed"),
    (_forge({**GOOD, "v": 2}), "malformed"),
    (_forge({**GOOD, "run": "../../etc"}), "malformed"),
    (_forge({**GOOD, "t0": "soon"}), "malformed"),
    (_forge({**GOOD, "t0": -1}), "malformed"),
    (_forge({**GOOD, "prio": True}), "malformed"),
    (_forge({**GOOD, "anchor": "has space"}), "malformed"),
    (_forge({**GOOD, "bound": "NaN"}), "malformed"),
    (_forge({**GOOD, "score": "not a score"}), "malformed"),
    (_forge({**GOOD, "extra": 1}), "malformed"),
    (_forge(GOOD), "another bulk run"),  # well formed, another run's scope
    ("A" * 5000, "characters"),
])
def test_cursor_http_refusals(client, broker, cursor: str, word: str | None) -> None:
    broker.heartbeat("w1", ["/demo_api/hello"], {"host": "test"})
    dead_letters(broker, "/demo_api/hello", ["x", "y"])
    r = client.post("/baichuan/bulk", headers=ADMIN, json={
        "topic": "/demo_api/hello", "action": "delete", "status": "failed", "cursor": cursor,
        "max_steps": 5})
    if word is None:
        assert r.get_json()["acted"] == 2 and r.get_json()["done"] is True
        return
    refused(r, 400, "ERR_BAD_PARAMS", word)
    assert broker.counts("/demo_api/hello")["failed"] == 2


@pytest.mark.parametrize("max_steps", [0, 1001, -1, "many", 1.5, True])
def test_max_steps_bounds(client, broker, max_steps: Any) -> None:
    dead_letters(broker, "/demo_api/hello", ["x"])
    r = client.post("/baichuan/bulk", headers=ADMIN, json={
        "topic": "/demo_api/hello", "action": "delete", "status": "failed",
        "max_steps": max_steps})
    refused(r, 400, "ERR_BAD_PARAMS", "max_steps")
    assert broker.counts("/demo_api/hello")["failed"] == 1


def test_a_dry_run_in_parts_needs_only_the_operator(client, broker) -> None:
    dead_letters(broker, "/demo_api/hello", ["x"] * 3)
    answers = []
    cursor = None
    while True:
        body = bulk(client, "/demo_api/hello", OPERATOR, action="requeue", status="failed",
                    step=1, dry_run=True, max_steps=2, cursor=cursor).get_json()
        answers.append(body)
        if body["done"]:
            break
        cursor = body["cursor"]
    assert sum(a["matched"] for a in answers) == 3 and len(answers) == 2
    refused(bulk(client, "/demo_api/hello", OPERATOR, action="requeue", status="failed",
                 max_steps=1), 403, "ERR_FORBIDDEN")
    assert broker.counts("/demo_api/hello")["failed"] == 3
