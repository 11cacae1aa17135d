"""Xingqiao's own settings: ``XINGQIAO_*`` variables, declared as the service's ``config``.

The framework reads and validates them once, with the settings; code asks
``runtime.get_config(XingqiaoConfig)``.
"""

from __future__ import annotations

from dataclasses import dataclass

from butterfly_common.config import Config, setting
from butterfly_common.settings import SettingsError

#: The topic every task message names for its completion notice (served by xingqiao).
NOTICE_TOPIC = "/xingqiao/task_notice"


@dataclass(frozen=True)
class XingqiaoConfig(Config):
    """Everything xingqiao reads from the environment, with its defaults."""

    plugin_dir: str | None = setting(
        "XINGQIAO_PLUGIN_DIR", None,
        help="folder of Python flow-type plugins (*.py), loaded at start and on reload")
    sweep_interval: float = setting(
        "XINGQIAO_SWEEP_INTERVAL", 2.0, min=0.05,
        help="seconds between sweeps (lost notices, task and flow timeouts)")
    sweep: bool = setting(
        "XINGQIAO_SWEEP", True,
        help="run the sweep in this process (one owner across replicas holds a lease)")
    notice_grace: float = setting(
        "XINGQIAO_NOTICE_GRACE", 1.0, min=0.0,
        help="a task message whose status did not change for this long is checked by the sweep")
    job_timeout: int = setting(
        "XINGQIAO_JOB_TIMEOUT", 3600, min=1,
        help="default flow timeout (s) when create_job gives none")
    task_timeout: float = setting("XINGQIAO_TASK_TIMEOUT", 600.0, min=0.1,
                                  help="a task's message timeout when the task sets none (s)")
    retry_delay: float = setting("XINGQIAO_RETRY_DELAY", 1.0, min=0.0,
                                 help="retry delay (s) when a task sets retrymax but no delay")
    max_retry_delay: float = setting(
        "XINGQIAO_MAX_RETRY_DELAY", 3600.0, min=0.0,
        help="upper bound of any retry delay (s), exponential backoff included")
    result_ttl: float = setting("XINGQIAO_RESULT_TTL", 86400.0, min=60.0,
                                help="how long task message records are kept in the queue (s)")
    graph_timeout: float = setting("XINGQIAO_GRAPH_TIMEOUT", 10.0, min=0.5,
                                   help="seconds dot may take to render one graph")
    drop_notices: float = setting(
        "XINGQIAO_DROP_NOTICES", 0.0, min=0.0, max=1.0,
        help="test hook: the fraction of notices to ignore, as if lost (proves the sweep)")

    def validate(self) -> None:
        """Backoff stops at the maximum, so the maximum cannot be below the first delay."""
        if self.max_retry_delay < self.retry_delay:
            raise SettingsError("XINGQIAO_MAX_RETRY_DELAY must be >= XINGQIAO_RETRY_DELAY")
