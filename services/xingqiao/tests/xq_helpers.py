"""A running fleet for the xingqiao tests (real processes) and a small client for it."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import requests

from butterfly_common.redis_client import make_redis
from butterfly_common.testing import ButterflyService, RedisServer, wait_until

TOKEN = "xq-test-admin-token-0123456789"
HERE = Path(__file__).parent
DONE = ("finished", "failed", "canceled", "timed_out")

#: Fast timings: sweep often, reap lost leases within seconds.
FAST = {"XINGQIAO_SWEEP_INTERVAL": "0.3", "XINGQIAO_NOTICE_GRACE": "0.3",
        "XINGQIAO_RETRY_DELAY": "0.2", "BUTTERFLY_MQ_LEASE": "2",
        "BUTTERFLY_CONSUME_MAX_IDLE": "0.05"}  # as deploy/fleet.toml


class XQ:
    """HTTP client of one xingqiao replica plus the Redis the fleet shares."""

    def __init__(self, url: str, redis_url: str, plugin_dir: Path | None = None) -> None:
        self.url = url
        #: The replica's XINGQIAO_PLUGIN_DIR: a test writes a plugin there, then reloads.
        self.plugin_dir = plugin_dir
        self.redis = make_redis(redis_url)
        self.http = requests.Session()
        self.auth = {"Authorization": f"Bearer {TOKEN}"}

    def close(self) -> None:
        """Close the kept-alive connection: a gunicorn worker stopping waits up to 2 s
        for an idle one (gthread's STOP_KEEPALIVE_LINGER), so close before stopping."""
        self.http.close()

    def get(self, route: str, /, **params: Any) -> requests.Response:
        return self.http.get(f"{self.url}/xingqiao/{route}", params=params, timeout=30)

    def post(self, route: str, /, auth: bool = True, **body: Any) -> requests.Response:
        return self.http.post(f"{self.url}/xingqiao/{route}", json=body, timeout=30,
                              headers=self.auth if auth else {})

    def ok(self, response: requests.Response) -> dict[str, Any]:
        assert response.status_code == 200, (response.status_code, response.text,
                                             response.headers.get("x-reason"))
        body = response.json()
        assert body["stat"] == "OK", body
        return body.get("data", body)

    def flow_type(self, name: str, tasks: list[dict], **extra: Any) -> dict[str, Any]:
        return self.ok(self.post("flow_type_create", name=name, tasks=tasks, **extra))

    def create(self, job_type: str, extra: dict | None = None, **kw: Any) -> int:
        body = {"job_namespace": "test", "job_type": job_type, **kw}
        if extra is not None:
            body["job_extra"] = extra
        return self.ok(self.post("create_job", **body))["job_id"]

    def job(self, job_id: int) -> dict[str, Any]:
        return self.ok(self.get("get_job_detail", job_id=job_id))

    def tasks(self, job_id: int) -> dict[str, dict[str, Any]]:
        rows = self.ok(self.get("get_tasklist_by_jobid", job_id=job_id))["list"]
        return {t["task_label"]: t for t in rows}

    def wait(self, job_id: int, timeout: float = 30.0,
             statuses: tuple[str, ...] = DONE) -> dict[str, Any]:
        return wait_until(lambda: (j := self.job(job_id))["job_status"] in statuses and j,
                          timeout, interval=0.05, what=f"flow {job_id} in {statuses}")

    def runs(self, key: str) -> int:
        return int(self.redis.get(f"xqt:runs:{key}") or 0)


def _env(redis_url: str, extra: dict[str, str]) -> dict[str, str]:
    return {"BUTTERFLY_REDIS_URL": redis_url, "BUTTERFLY_ADMIN_TOKEN": TOKEN,
            "BUTTERFLY_WORKERS": "1", **FAST, **extra}


def task_consumer(redis_url: str, **extra: str) -> ButterflyService:
    """core (demo handlers) or the test app consuming its topics."""
    return ButterflyService("xq_testapp:service", _env(redis_url, {
        "BUTTERFLY_CONSUME": "1", "PYTHONPATH": str(HERE) + os.pathsep
        + os.environ.get("PYTHONPATH", ""), **extra}))


def core_consumer(redis_url: str, **extra: str) -> ButterflyService:
    return ButterflyService("core", _env(redis_url, {"BUTTERFLY_CONSUME": "1", **extra}))


def xingqiao(redis_url: str, **extra: str) -> ButterflyService:
    return ButterflyService("xingqiao", _env(redis_url, {"BUTTERFLY_CONSUME": "1", **extra}))


@contextlib.contextmanager
def fleet(**xq_env: str) -> Iterator[XQ]:
    """Redis + core + the test app (both consuming) + one xingqiao replica, whose plugin
    folder is a fresh temporary directory (``XQ.plugin_dir``)."""
    with tempfile.TemporaryDirectory(prefix="xq-plugins-") as plugins:
        xq_env.setdefault("XINGQIAO_PLUGIN_DIR", plugins)
        with RedisServer() as redis, core_consumer(redis.url), task_consumer(redis.url), \
                xingqiao(redis.url, **xq_env) as xq:
            client = XQ(xq.url, redis.url, Path(xq_env["XINGQIAO_PLUGIN_DIR"]))
            try:
                yield client
            finally:
                client.close()  # before the services stop (see XQ.close)
