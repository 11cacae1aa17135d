"""A small Python client of the xingqiao HTTP API: create a flow, wait for it, retry it.

::

    from butterfly_xingqiao.client import FlowClient

    flows = FlowClient("http://127.0.0.1:4700", token=os.environ["BUTTERFLY_ADMIN_TOKEN"])
    job_id = flows.create("hello", job_extra={"str_info": "hi"})
    job = flows.wait(job_id, timeout=30)          # the job detail once it ended
    if job["job_status"] != "finished":
        flows.retry(job_id)                       # rerun from where it failed
    flows.send_signal(job_id, "approved", {"by": "ann"})   # a signal task's result

A thin layer over the framework's ``ServiceClient`` (reqid, token, pooled connections,
time-outs, the envelope): its methods name xingqiao's routes and return their ``data``.
"""

from __future__ import annotations

import time
from typing import Any

from butterfly_common.httpclient import ServiceClient, ServiceError
from butterfly_common.reqid import new_reqid

ENDED = ("finished", "failed", "canceled", "timed_out")
DEFAULT_URL = "http://127.0.0.1:4700"

#: xingqiao refused: ``stat``, the ``x-reason`` text and the HTTP ``status``.
FlowError = ServiceError


class FlowClient(ServiceClient):
    """Calls ``/xingqiao/*`` on ``base_url`` (default ``BUTTERFLY_XINGQIAO_URL``, else the
    installed xingqiao's port); ``token`` authorizes the write routes."""

    app = "xingqiao"

    def __init__(self, base_url: str | None = None, token: str | None = None,
                 timeout: float = 10.0) -> None:
        super().__init__(base_url or "xingqiao", token=token, timeout=timeout,
                         default_url=DEFAULT_URL)

    def create(self, job_type: str, job_extra: dict[str, Any] | None = None,
               job_namespace: str = "default", **options: Any) -> int:
        """Start a flow; returns its job_id (options: job_name, job_timeout).

        Without a ``job_name`` it names the flow with a fresh id: the service's default is
        the request's reqid, and this client passes on the reqid of the call it is made
        in, so a handler starting two flows would otherwise name both alike."""
        options.setdefault("job_name", new_reqid())
        return int(self.data("create_job", {
            "job_type": job_type, "job_namespace": job_namespace,
            "job_extra": job_extra or {}, **options})["job_id"])

    def get(self, job_id: int) -> dict[str, Any]:
        """The flow's detail: status, tasks' results, ``ret_data``."""
        return self.data("get_job_detail", {"job_id": job_id})

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
        return self.data("retry_job", {"job_id": job_id})

    def cancel(self, job_id: int) -> dict[str, Any]:
        """Cancel a flow that has not ended."""
        return self.data("cancel_job", {"job_id": job_id})

    def send_signal(self, job_id: int, name: str,
                    payload: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send signal ``name`` to flow ``job_id``: its signal task of that name finishes
        with ``payload`` as its result (kept until the task is reached)."""
        return self.data("send_signal", {"job_id": job_id, "name": name,
                                         "payload": payload or {}})

    def create_trigger(self, name: str, job_type: str, job_namespace: str = "trigger",
                       **options: Any) -> dict[str, Any]:
        """Bind events published to ``/xingqiao/trigger`` with ``trigger: name`` to flows
        of ``job_type`` (options: job_version, description, enabled); the trigger."""
        return self.data("trigger_create", {"name": name, "job_type": job_type,
                                            "job_namespace": job_namespace, **options})

    def enable_trigger(self, name: str, enabled: bool = True) -> dict[str, Any]:
        """Enable (or with ``enabled=False`` disable: events then are dropped) a trigger."""
        return self.data("trigger_enable" if enabled else "trigger_disable", {"name": name})

    def triggers(self) -> list[dict[str, Any]]:
        """Every trigger, by name."""
        return list(self.data("trigger_list", {})["list"])

    def tasks(self, job_id: int) -> list[dict[str, Any]]:
        """The flow's tasks, in order."""
        return list(self.data("get_tasklist_by_jobid", {"job_id": job_id})["list"])
