"""The engine and the API's Redis calls through Twemproxy (2 shards behind nutcracker) and
on a 3-node Redis Cluster.

Twemproxy closes the connection on any command it does not know, so this is what proves
ruqi only uses one-key commands, one-key scripts and plain pipelines.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from butterfly_common import db, runtime
from butterfly_common.testing import queue_store, wait_until
from butterfly_ruqi import jobs
from butterfly_ruqi.claims import Claims, fire_key
from butterfly_ruqi.models import History, Job

# nutcracker is installed by `make system-deps`: no skip, a missing binary fails the test.


@pytest.fixture(scope="module", params=["twemproxy", "cluster"])
def proxy(request: pytest.FixtureRequest) -> Iterator[str]:
    with queue_store(request.param) as url:
        yield url


@pytest.fixture
def proxied(proxy: str, tmp_path: Path, configure_runtime):
    settings = configure_runtime(proxy, f"sqlite:///{tmp_path / 'tw.db'}")
    yield settings
    db.database.close()


def test_engines_through_twemproxy(proxied, engines, callee, add):
    add("tw1", f"{callee.url}/a")
    add("tw2", f"{callee.url}/b?sleep=1.5", overlap="forbid")
    add("tw3", f"{callee.url}/c", rule="1h")
    with db.database.connection_context():
        ms = round(Job.get_by_id("tw1").next_run_time * 1000)
    runtime.get_redis().set(fire_key("tw1", ms), "c|ghost", px=60_000)
    group = engines.start(2)
    jobs.run_job("tw3", "00000000000000CC")
    wait_until(lambda: len(callee.of("tw1")) >= 3 and callee.of("tw3"), timeout=10)
    jobs.pause_job("tw1")
    wait_until(lambda: all(e.status()["jobs_scheduled"] == 2 for e in group), timeout=2)
    engines.stop_all()

    tw1 = sorted(c["ms"] for c in callee.of("tw1"))
    assert ms in tw1, "the fire claimed by a dead engine was taken over"
    assert max(Counter(tw1).values()) == 1
    assert all(b - a == 1000 for a, b in itertools.pairwise(tw1))
    assert [c["reqid"] for c in callee.of("tw3")] == ["00000000000000CC"]
    starts = sorted(c["at"] for c in callee.of("tw2"))
    assert all(b - a >= 1.5 for a, b in itertools.pairwise(starts)), (
        "overlap=forbid broken", [(c["ms"], c["at"]) for c in callee.of("tw2")])
    with db.database.connection_context():
        statuses = Counter(r.status for r in History.select())
    assert set(statuses) <= {"ok", "skipped"}
    assert sum(e.watcher.taken_over for e in group) == 1


def test_overlap_buffer_through_twemproxy(proxied, engines, callee, add):
    """overlap.lua (one hash key per job, EVAL) through nutcracker: buffered fires run
    one after the other."""
    add("tw5", f"{callee.url}/b?sleep=1.5", overlap="buffer_one")
    engines.start(2)

    def outputs() -> list[str]:
        with db.database.connection_context():
            return [r.cmd_output for r in History.select().where(History.job_id == "tw5")]

    wait_until(lambda: any(o.startswith("[buffered:") for o in outputs()), timeout=15,
               what="a buffered fire ran")
    jobs.pause_job("tw5")
    claims = Claims(runtime.get_redis(), "probe")
    wait_until(lambda: claims.overlap_state("tw5") == ("", 0), timeout=10)
    engines.stop_all()
    starts = sorted(c["at"] for c in callee.of("tw5"))
    assert all(b - a >= 1.45 for a, b in itertools.pairwise(starts)), starts
    with db.database.connection_context():
        statuses = {r.status for r in History.select().where(History.job_id == "tw5")}
    assert statuses <= {"ok", "skipped"}


def test_cancel_other_through_twemproxy(proxied, engines, callee, add):
    """cancel_other's displacement (overlap.lua) and its check (HMGET of each job's hash,
    pipelined) through nutcracker and on a cluster: each fire stops the one before it."""
    add("tw6", f"{callee.url}/b?sleep=2.5", overlap="cancel_other")
    engines.start(2)

    def history() -> list[History]:
        with db.database.connection_context():
            return list(History.select().where(History.job_id == "tw6"))

    wait_until(lambda: len([r for r in history() if r.status == "canceled"]) >= 2,
               timeout=15, what="two fires canceled by the next")
    jobs.pause_job("tw6")
    claims = Claims(runtime.get_redis(), "probe")
    wait_until(lambda: claims.overlap_state("tw6") == ("", 0), timeout=10)
    engines.stop_all()
    rows = history()
    assert {r.status for r in rows} <= {"ok", "canceled"}
    assert all(r.cmd_output.startswith("canceled by fire at ") for r in rows
               if r.status == "canceled")
