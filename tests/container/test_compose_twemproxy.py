"""`docker compose up` of deploy/compose.yml as users run it: the images built from deploy/,
every healthcheck green, the fleet driven over its published ports, then crashes,
restarts, a rolling rebuild and scaled workers, with nothing lost.

The tests run in file order on one fleet (module scope): each leaves it up and healthy.
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urljoin

import pytest
import requests
from compose_fleet import TIMINGS, ComposeFleet, running_fleet, timed

from butterfly_common.testing import wait_until
from butterfly_wuxing.client import WuxingClient

TOPIC = "/demo_api/hello"
CORE, RUQI_1, RUQI_2, WUXING, CANGHAI, XINGQIAO = 8585, 4100, 4101, 4200, 4400, 4700
W = "/wuxing"


@pytest.fixture(scope="module")
def fleet(docker_engine: object, env_file: Path) -> Iterator[ComposeFleet]:
    yield from running_fleet("compose.yml", "bftest", env_file, "twemproxy")


def read_records(fleet: ComposeFleet, msg_ids: list[str]) -> dict[str, dict]:
    """Each message's record, read 8 at a time."""
    with ThreadPoolExecutor(8) as pool:
        return dict(zip(msg_ids, pool.map(fleet.message, msg_ids), strict=True))


def wait_finished(fleet: ComposeFleet, msg_ids: list[str], timeout: float) -> dict[str, dict]:
    """Every message's record once all of them are ``finished`` (fails at the deadline with
    how many were not); each round reads only those not finished yet."""
    records: dict[str, dict] = {}

    def unfinished() -> list[str]:
        return [m for m in msg_ids if records.get(m, {}).get("status") != "finished"]

    def all_finished() -> bool:
        records.update(read_records(fleet, unfinished()))
        return not unfinished()

    try:
        wait_until(all_finished, timeout, interval=1, what="every message finished")
    except TimeoutError:
        stuck = [(m, records.get(m, {}).get("status")) for m in unfinished()]
        raise AssertionError(f"{len(stuck)} of {len(msg_ids)} not finished: "
                             f"{stuck[:10]}") from None
    return records


def publish_many(fleet: ComposeFleet, count: int, tag: str, **options: object) -> list[str]:
    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(lambda i: fleet.publish(TOPIC, {"str_info": f"{tag}-{i}"},
                                                     **options), range(count)))


def topic_counts(fleet: ComposeFleet) -> dict[str, int]:
    rows = fleet.get(4300, "/baichuan/topics", page_size=100)["data"]["list"]
    return next(r for r in rows if r["topic"] == TOPIC)


def test_every_container_is_up_and_healthy(fleet):
    containers = fleet.containers()
    services = {c["Config"]["Labels"]["com.docker.compose.service"] for c in containers}
    assert services == set(fleet.services())
    assert fleet.not_ready() == []
    for port in (CORE, 4300, RUQI_1, RUQI_2, WUXING, CANGHAI, XINGQIAO, 4701):
        assert fleet.get(port, "/readyz")["stat"] == "OK"


def test_a_queued_call_goes_through_twemproxy(fleet):
    msg_id = fleet.publish(TOPIC, {"str_info": "through the proxy"})
    done = fleet.get(4300, "/baichuan/wait", msg_id=msg_id, timeout=20)
    assert done["status"] == "finished"
    assert done["result"] == {"stat": "OK", "str_info": "through the proxy"}
    # the topic's keys sit on exactly one of the two shards behind Twemproxy
    holders = [shard for shard in ("redis-1", "redis-2") if fleet.compose(
        "exec", "-T", shard, "redis-cli", "exists", f"bc:{{{TOPIC}}}:msg:{msg_id}"
    ).stdout.strip() == "1"]
    assert len(holders) == 1


def test_a_flow_runs(fleet):
    answer = fleet.post(XINGQIAO, "/xingqiao/create_job", job_namespace="demo",
                        job_type="hello", job_extra={"str_info": "flow"})
    assert answer["stat"] == "OK", answer
    detail = fleet.flow_ended(answer["data"]["job_id"])
    assert (detail["job_status"], detail["ret_stat"]) == ("finished", "OK")
    assert detail["ret_data"]["merged"]["str_info"] == "flow"


def test_a_scheduled_job_fires(fleet):
    # added on one replica, read on the other: they share the jobs and their history
    runs = fleet.fires("tick", TOPIC + '#{"str_info": "tick"}', count=2, port=RUQI_1,
                       history_port=RUQI_2)
    assert len({r["scheduled_time"] for r in runs}) == len(runs)  # none ran twice


def wuxing_write(fleet: ComposeFleet, path: str, **body: object) -> None:
    answer = fleet.post(WUXING, W + path, namespace="container", **body)
    assert answer["stat"] == "OK", (path, answer)


def make_wuxing_instance(fleet: ComposeFleet, name: str, port_value: int) -> None:
    wuxing_write(fleet, "/instance_create", instance_name=name, section_name="host",
                 section_version="v1", items_data={"i|port": port_value})


def wuxing_port(fleet: ComposeFleet, name: str) -> int:
    answer = fleet.get(WUXING, W + "/instance_get", namespace="container", instance_name=name)
    assert answer["stat"] == "OK", answer
    return int(answer["data"]["i|port"])


def test_wuxing_writes_and_reads_on_mariadb(fleet):
    section = {"section_name": "host", "section_version": "v1"}
    wuxing_write(fleet, "/section_create", **section)
    wuxing_write(fleet, "/section_item_add", item_name="i|port", item_default=80, **section)
    wuxing_write(fleet, "/section_enable", **section)
    make_wuxing_instance(fleet, "web1", 8080)
    assert wuxing_port(fleet, "web1") == 8080
    # the row is in MariaDB itself, not only in wuxing's Redis cache
    sql = fleet.compose(
        "exec", "-T", "mariadb", "mariadb", "-ubutterfly",
        f"-p{fleet.secrets['BUTTERFLY_DB_PASSWORD']}", "butterfly", "--batch",
        "--skip-column-names", "-e", "SELECT instance_name FROM wuxing_instance").stdout
    assert "web1" in sql.split()


def test_a_wuxing_watch_streams_a_change(fleet):
    """The streamed watch through the deployed server (gunicorn's chunked answer): a
    watcher holding one stream gets a change written after it opened, once."""
    client = WuxingClient(fleet.url(WUXING, ""), token=fleet.secrets["BUTTERFLY_ADMIN_TOKEN"])
    since = client.revision("container")
    seen: list[dict] = []

    def watch() -> None:
        for change in client.watch("container", since=since, poll=20, stop_after=20):
            seen.append(change)
            return

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    make_wuxing_instance(fleet, "streamed", 7070)
    watcher.join(30)
    assert not watcher.is_alive(), "the change never reached the stream"
    assert seen and seen[0]["revision"] > since and seen[0]["instance_name"] == "streamed"


class LocalBrowser:
    """Keeps cookies as a browser does for http://127.0.0.1, Secure ones included (a local
    origin counts as potentially trustworthy); requests would drop those over plain HTTP."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.cookies: dict[str, str] = {}
        self.secure: dict[str, bool] = {}

    def request(self, method: str, path: str, **kwargs: object) -> requests.Response:
        url = urljoin(self.base, path)
        while True:
            reply = requests.request(method, url, cookies=self.cookies, timeout=30,
                                     allow_redirects=False, **kwargs)
            for cookie in reply.cookies:
                self.cookies[cookie.name] = cookie.value
                self.secure[cookie.name] = bool(cookie.secure)
            if reply.status_code not in (301, 302, 303, 307, 308):
                return reply
            method, url, kwargs = "GET", urljoin(url, reply.headers["Location"]), {}


def test_the_console_signs_in_and_shows_the_queue(fleet):
    password = "container-test-password"
    fleet.compose("exec", "-T", "canghai", "butterfly", "user", "add", "ops", "--role",
                  "admin", "--password-stdin", stdin=password + "\n")
    browser = LocalBrowser(fleet.url(CANGHAI, "/"))
    page = browser.request("GET", "/console/login")
    assert page.status_code == 200
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert csrf, "no sign-in form"
    signed = browser.request("POST", "/console/login",
                             data={"username": "ops", "password": password,
                                   "csrf_token": csrf.group(1), "next": "/console/queues"})
    assert signed.status_code == 200 and signed.url.endswith("/console/queues")
    assert "ops" in signed.text and TOPIC in signed.text
    # outside development, the console's cookies are Secure
    assert browser.secure and all(browser.secure.values())
    # and the same page without the session is the sign-in page, not the data
    anonymous = requests.get(fleet.url(CANGHAI, "/console/queues"), timeout=30)
    assert TOPIC not in anonymous.text


def test_the_image_has_a_separate_user_for_ruqi_scripts(fleet):
    ids = fleet.compose("exec", "-T", "ruqi-1", "id", "butterfly-script").stdout
    assert ids.startswith("uid=10002(butterfly-script)")
    me = fleet.compose("exec", "-T", "ruqi-1", "id", "-un").stdout.strip()
    assert me == "butterfly"  # the services themselves never run as root by default


def worker_hosts(fleet: ComposeFleet) -> dict[str, str]:
    """Container hostname (the short id) -> container name of every core-worker."""
    return {c["Config"]["Hostname"]: c["Name"].lstrip("/")
            for c in fleet.containers("core-worker") if c["State"]["Status"] == "running"}


def test_the_queue_controls_work_through_twemproxy(fleet):
    """Issue 24's controls on the deployed fleet, over HTTP through Twemproxy: limits set
    by the admin, a priority, a dedup key, a concurrency group, a batch whose callback is
    published once, and a bulk dry run."""
    limits = fleet.post(4300, "/baichuan/set_topic_limits", topic=TOPIC, max_running=4,
                        group_max_running=2)
    assert limits["stat"] == "OK", limits
    try:
        assert (limits["max_running"], limits["group_max_running"]) == (4, 2)
        first = fleet.post(4300, "/baichuan/publish", topic=TOPIC,
                           data={"str_info": "dedup"}, dedup_key="container-once",
                           priority=5, group="tenant-a")
        again = fleet.post(4300, "/baichuan/publish", topic=TOPIC,
                           data={"str_info": "dedup again"}, dedup_key="container-once")
        assert first["stat"] == again["stat"] == "OK", (first, again)
        assert first["dedup"]["outcome"] == "new"
        if again["dedup"]["outcome"] == "duplicate":  # the first had not ended yet
            assert again["msg_id"] == first["msg_id"]
        else:  # it had ended: until_done lets a new one in
            assert again["dedup"]["outcome"] == "new"
        done = fleet.get(4300, "/baichuan/wait", msg_id=first["msg_id"], timeout=20)
        assert done["status"] == "finished", done
        record = fleet.message(first["msg_id"])
        assert (record["priority"], record["group"]) == (5, "tenant-a"), record

        batch_id = f"container-{os.getpid()}-{time.time_ns()}"
        opened = fleet.post(4300, "/baichuan/publish_batch", batch_id=batch_id,
                            on_complete=TOPIC,
                            messages=[{"topic": TOPIC, "data": {"str_info": f"b{i}"},
                                       "group": f"tenant-{i % 3}"} for i in range(20)])
        assert (opened["stat"], opened["created"]) == ("OK", 20), opened

        def batch_sent() -> dict | None:
            b = fleet.get(4300, "/baichuan/batch", batch_id=batch_id)
            return b if b["callbacks"]["complete"] == "sent" else None

        batch = wait_until(batch_sent, 60, interval=0.5, what=f"batch {batch_id} ended")
        assert (batch["state"], batch["total"], batch["ok"]) == ("ended", 20, 20), batch
        callback = fleet.message(f"batch.{batch_id}.complete")
        assert callback["status"] in ("queued", "started", "finished", "failed"), callback

        preview = fleet.post(4300, "/baichuan/bulk", topic=TOPIC, action="requeue",
                             status="finished", error="no such error text", dry_run=True)
        assert (preview["stat"], preview["matched"], preview["acted"]) == ("OK", 0, 0)
    finally:
        cleared = fleet.post(4300, "/baichuan/set_topic_limits", topic=TOPIC)
        assert cleared["stat"] == "OK" and cleared["max_running"] is None, cleared


def test_scaled_workers_share_one_topic(fleet):
    with timed("scenario: scale core-worker to 3 (up to healthy)"):
        fleet.compose("up", "-d", "--no-recreate", "--scale", "core-worker=3")
        fleet.wait_healthy()
    hosts = worker_hosts(fleet)
    assert len(hosts) == 3
    seen: set[str] = set()

    def every_worker_served() -> bool:
        ids = publish_many(fleet, 60, "scale")
        for record in wait_finished(fleet, ids, 60).values():
            seen.add(record["worker"].split(":")[1])  # <service>:<host>:<pid>:<n>
        return set(hosts) <= seen

    with timed("scenario: three workers share one topic"):
        wait_until(every_worker_served, 120, interval=0, what="each worker took messages")


def test_a_crashed_core_is_restarted_and_loses_nothing(fleet):
    # core alone consumes the topic now, so every message in flight is in the crashed one
    fleet.compose("up", "-d", "--no-recreate", "--scale", "core-worker=0")
    (core,) = fleet.containers("core")
    with timed("scenario: publish 2000 delayed messages"):
        ids = publish_many(fleet, 2000, "crash", delay=10)
    before = topic_counts(fleet)
    # the kill lands mid-drain: a hundred finished, a backlog waiting (due messages are
    # claimed straight from the delayed set)
    wait_until(lambda: (c := topic_counts(fleet))["finished"] > before["finished"] + 100
               and c["delayed"] + c["queued"] > 100, 60, interval=0.01,
               what="core draining the messages")
    # SIGKILL core's main process from the host: a crash, which compose's restart policy
    # answers (docker kill or stop would count as a manual stop)
    os.kill(core["State"]["Pid"], signal.SIGKILL)
    left = read_records(fleet, ids)
    unfinished = [m for m, r in left.items() if r["status"] != "finished"]
    TIMINGS["crash: messages unfinished when core was killed"] = len(unfinished)
    assert unfinished, "core finished every message before the kill"
    # only the killed consumer had run any of them: its worker id is on the finished ones
    dead = {r["worker"] for r in left.values() if r["status"] == "finished"}
    with timed("scenario: crashed core restarted by compose, healthy"):
        wait_until(lambda: fleet.containers("core")[0]["RestartCount"] > core["RestartCount"],
                   60, interval=0.2, what="compose restarting core")
        fleet.wait_healthy()
    # a message the dead core had claimed stays "started" under its worker id until its
    # lease (30 s) runs out; read now, long after any last bytes of the dead process landed
    stranded = [m for m, r in read_records(fleet, unfinished).items()
                if r["status"] == "started" and r["worker"] in dead]
    TIMINGS["crash: messages in core's hands when it was killed"] = len(stranded)
    with timed("scenario: every message finished after the crash"):
        done = wait_finished(fleet, ids, 180)
    # at-least-once: what the crash took mid-run came back after its lease and ran again
    assert all(done[m]["attempts"] >= 2 for m in stranded), [done[m] for m in stranded]
    TIMINGS["crash: messages delivered again (at-least-once)"] = sum(
        1 for r in done.values() if r["attempts"] > 1)
    fleet.compose("up", "-d", "--no-recreate", "--scale", "core-worker=1")


def test_a_rolling_rebuild_of_core_loses_nothing(fleet):
    (old,) = fleet.containers("core")
    ids: list[str] = []
    stop = threading.Event()

    def keep_publishing() -> None:
        n = 0
        while not stop.is_set():
            ids.append(fleet.publish(TOPIC, {"str_info": f"rolling-{n}"}))
            n += 1
            time.sleep(0.02)

    publisher = threading.Thread(target=keep_publishing)
    publisher.start()
    try:
        wait_until(lambda: len(ids) >= 20, 30, what="messages flowing")
        with timed("scenario: rolling rebuild of core (up --no-deps --build)"):
            fleet.compose("up", "-d", "--no-deps", "--build", "--force-recreate", "core",
                          timeout=900)
            fleet.wait_healthy()
        after = len(ids)
        wait_until(lambda: len(ids) >= after + 20, 30, what="messages after it")
    finally:
        stop.set()
        publisher.join(30)
    (new,) = fleet.containers("core")
    assert new["Id"] != old["Id"]
    with timed("scenario: every message of the rebuild finished"):
        wait_finished(fleet, ids, 120)
    TIMINGS["rolling rebuild: messages published across it"] = len(ids)


def test_data_survives_down_and_up(fleet):
    msg_id = fleet.publish(TOPIC, {"str_info": "delayed across a restart"}, delay=30)
    added = fleet.post(RUQI_1, "/ruqi/add_job", job_trigger="cron", job_id="yearly",
                       job_name="kept", rule="0 0 1 1 *", cmd=TOPIC + '#{"str_info": "y"}')
    assert added["stat"] == "OK", added
    make_wuxing_instance(fleet, "web2", 9090)
    assert fleet.message(msg_id)["status"] == "delayed"
    # down removes every container: only the volumes carry the data over
    with timed("scenario: down (volumes kept), then up to healthy"):
        fleet.compose("down", timeout=300)
        assert fleet.containers() == []
        fleet.compose("up", "-d", timeout=600)
        fleet.wait_healthy()
    assert wuxing_port(fleet, "web2") == 9090 and wuxing_port(fleet, "web1") == 8080
    jobs = fleet.get(RUQI_1, "/ruqi/get_jobs", page_size=50)["data"]["list"]
    assert "yearly" in {j["job_id"] for j in jobs}
    done = wait_finished(fleet, [msg_id], 90)[msg_id]
    assert done["result"] == {"stat": "OK", "str_info": "delayed across a restart"}
