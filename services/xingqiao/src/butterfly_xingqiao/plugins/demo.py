"""The demo flow types of the original, over core's ``/demo_api`` handlers.

- ``ping``: task1 -> task2, both ``/demo_api/ping``.
- ``hello``: task1 ``/demo_api/hello`` (``str_info`` from job_extra) -> task2 ping ->
  task3 ``/demo_api/collect`` (``all_taskdata`` of task1 and task2, saved as the result).
- ``hello_params``: the same with fixed params instead of job_extra.
"""

from __future__ import annotations

from typing import Any

from butterfly_xingqiao.definitions import Workflow


class Ping(Workflow):
    def workflow(self) -> None:
        self.add_task("task1", "/demo_api/ping")
        self.add_task("task2", "/demo_api/ping", dependencies=["task1"])


class Hello(Workflow):
    def params_check(self) -> None:
        if not isinstance(self.job_extra.get("str_info"), str):
            raise ValueError("job_extra.str_info (a string) is required")

    def workflow(self) -> None:
        self.add_task("task1", "/demo_api/hello", requires=["str_info"],
                      provides=["str_info"])
        self.add_task("task2", "/demo_api/ping", dependencies=["task1"])
        self.add_task("task3", "/demo_api/collect", requires=["all_taskdata"],
                      dependencies=["task1", "task2"], is_save=True)


class HelloParams(Workflow):
    def workflow(self) -> None:
        self.add_task("task1", "/demo_api/hello", params={"str_info": "hello world"})
        self.add_task("task2", "/demo_api/ping", dependencies=["task1"])
        self.add_task("task3", "/demo_api/collect", requires=["all_taskdata"],
                      dependencies=["task1", "task2"], is_save=True)


def setup(app: Any) -> None:
    app.register_formatter("ping", Ping)
    app.register_formatter("hello", Hello)
    app.register_formatter("hello_params", HelloParams)
