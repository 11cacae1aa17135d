"""The ids ruqi and xingqiao give their own messages cannot be squatted through baichuan.

ruqi publishes each topic fire with ``ruqi:<job>:<ms>`` (the job's next run time is
public) and xingqiao each task with ``xq<flow>.<token>.<task>.<run>``; ids are
idempotent per topic, so a message published beforehand under such an id would stand in
for the service's own. The replay: an anonymous publish of the coming fire's id with the
attacker's data, then the fire.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from butterfly_common import mq
from butterfly_common.app import create_app
from butterfly_common.mq.keys import reserved_by
from butterfly_common.redis_client import make_redis
from butterfly_common.settings import load_settings
from butterfly_common.testing import RedisServer

TOPIC = "/demo_api/hello"


@pytest.fixture
def baichuan(tmp_path: Path, redis_server: RedisServer):
    make_redis(redis_server.url).flushall()
    settings = load_settings({"BUTTERFLY_REDIS_URL": redis_server.url,
                              "BUTTERFLY_LOG_DIR": str(tmp_path / "log"),
                              "BUTTERFLY_DATA_DIR": str(tmp_path / "data")})
    client = create_app("baichuan", settings).test_client()
    mq.broker().heartbeat("w1", (TOPIC,), {"host": "test", "pid": 1})
    return client


def test_a_ruqi_fire_id_published_beforehand_is_refused_and_the_fire_carries_its_data(
        baichuan):
    from butterfly_ruqi.commands import run_command

    scheduled = 1_900_000_000.0  # the job's next_run_time, as get_jobs shows anyone
    fire_id = f"ruqi:tick:{round(scheduled * 1000)}"
    squat = baichuan.post("/baichuan/publish", json={
        "topic": TOPIC, "data": {"str_info": "attacker"}, "msg_id": fire_id, "force": True})
    assert squat.status_code == 403
    assert squat.get_json() == {"stat": "ERR_MSG_ID_RESERVED"}
    assert "reserved for ruqi" in squat.headers["x-reason"]
    assert mq.get(fire_id, TOPIC) is None  # nothing was queued under the fire's id
    outcome = run_command(f'{TOPIC}#{{"str_info": "ruqi"}}', script_dir=None, timeout=5,
                          reqid="0123456789ABCDEF", job_id="tick", scheduled=scheduled)
    assert outcome.success and outcome.output == f"msg_id={fire_id}"
    message = mq.get(fire_id, TOPIC)
    assert message is not None and message.data == {"str_info": "ruqi"}


def test_xingqiao_task_ids_are_reserved_and_other_ids_are_not(baichuan):
    from butterfly_xingqiao import engine
    from butterfly_xingqiao.models import Job, Task

    task_id = engine.msg_id_of(Job(job_id=12, job_token="a1b2"), Task(task_id=7), 0)
    assert reserved_by(task_id) == "xingqiao"
    squat = baichuan.post("/baichuan/publish", json={
        "topic": TOPIC, "data": {}, "msg_id": task_id, "force": True})
    assert squat.status_code == 403 and squat.get_json()["stat"] == "ERR_MSG_ID_RESERVED"
    # a caller's own ids stay theirs, including ones that merely look alike
    for own in ("order-17", "xq-report", "xqa.1", "RUQI:tick:1", "my-ruqi:1"):
        body = baichuan.post("/baichuan/publish", json={
            "topic": TOPIC, "data": {}, "msg_id": own}).get_json()
        assert body["stat"] == "OK" and body["msg_id"] == own, own
