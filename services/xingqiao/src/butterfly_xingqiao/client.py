"""A small Python client of the xingqiao HTTP API: create a flow, wait for it, retry it.

::

    from butterfly_xingqiao.client import FlowClient

    flows = FlowClient("http://127.0.0.1:4700", token=os.environ["BUTTERFLY_ADMIN_TOKEN"])
    job_id = flows.create("hello", job_extra={"str_info": "hi"})
    job = flows.wait(job_id, timeout=30)          # the job detail once it ended
    if job["job_status"] != "finished":
        flows.retry(job_id)                       # rerun from where it failed
"""

from __future__ import annotations

import time
from typing import Any

import requests

ENDED = ("finished", "failed", "canceled", "timed_out")


class FlowError(RuntimeError):
    """xingqiao refused: ``stat`` and the ``x-reason`` text."""

    def __init__(self, stat: str, reason: str, status: int) -> None:
        super().__init__(f"{stat}: {reason}")
        self.stat, self.reason, self.status = stat, reason, status


class FlowClient:
    """Calls ``/xingqiao/*`` on ``base_url``; ``token`` authorizes the write routes."""

    def __init__(self, base_url: str, token: str | None = None, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def call(self, route: str, method: str = "GET", **params: Any) -> dict[str, Any]:
        url = f"{self.base_url}/xingqiao/{route}"
        if method == "GET":
            reply = self.session.get(url, params=params, timeout=self.timeout)
        else:
            reply = self.session.post(url, json=params, timeout=self.timeout)
        try:
            body = reply.json()
        except ValueError:
            raise FlowError("ERR_NOT_JSON", reply.text[:200], reply.status_code) from None
        if body.get("stat") != "OK":
            raise FlowError(body.get("stat", "?"), reply.headers.get("x-reason", ""),
                            reply.status_code)
        return body.get("data", body)

    def create(self, job_type: str, job_extra: dict | None = None, job_namespace: str = "default",
               **options: Any) -> int:
        """Start a flow; returns its job_id (options: job_name, job_timeout)."""
        return int(self.call("create_job", "POST", job_type=job_type, job_namespace=job_namespace,
                             job_extra=job_extra or {}, **options)["job_id"])

    def get(self, job_id: int) -> dict[str, Any]:
        return self.call("get_job_detail", job_id=job_id)

    def wait(self, job_id: int, timeout: float = 60.0, interval: float = 0.05) -> dict[str, Any]:
        """Poll until the flow ended (any end state); TimeoutError after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.get(job_id)
            if job["job_status"] in ENDED:
                return job
            if time.monotonic() >= deadline:
                raise TimeoutError(f"flow {job_id} still {job['job_status']} after {timeout}s")
            time.sleep(interval)
            interval = min(interval * 1.5, 1.0)

    def retry(self, job_id: int) -> dict[str, Any]:
        """Rerun a failed / timed-out / canceled flow from where it failed."""
        return self.call("retry_job", "POST", job_id=job_id)

    def cancel(self, job_id: int) -> dict[str, Any]:
        return self.call("cancel_job", "POST", job_id=job_id)

    def tasks(self, job_id: int) -> list[dict[str, Any]]:
        return self.call("get_tasklist_by_jobid", job_id=job_id)["list"]
