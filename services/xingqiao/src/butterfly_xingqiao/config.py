"""Xingqiao's own settings: ``XINGQIAO_*`` variables, read once from ``Settings.extra``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from butterfly_common.settings import Settings, SettingsError, env_flag, env_number

#: The topic every task message names for its completion notice (served by xingqiao).
NOTICE_TOPIC = "/xingqiao/task_notice"


@dataclass(frozen=True)
class XingqiaoConfig:
    """Everything xingqiao reads from the environment, with its defaults."""

    #: Folder of Python flow-type plugins (``*.py``), loaded at start and on reload.
    plugin_dir: str | None = None
    #: Seconds between sweeps (lost notices, task and flow timeouts).
    sweep_interval: float = 2.0
    #: Run the sweep in this process (one owner across replicas holds a lease).
    sweep: bool = True
    #: A task message whose status did not change for this long is checked by the sweep.
    notice_grace: float = 1.0
    #: Default flow timeout (s) when create_job gives none (the original's 3600).
    job_timeout: int = 3600
    #: A task's message timeout when the task sets none (s).
    task_timeout: float = 600.0
    #: Retry delay (s) when a task sets retrymax but no retry_delay.
    retry_delay: float = 1.0
    #: Upper bound of any retry delay (s), exponential backoff included.
    max_retry_delay: float = 3600.0
    #: How long task message records are kept in the queue (s).
    result_ttl: float = 86400.0
    #: Seconds ``dot`` may take to render one graph.
    graph_timeout: float = 10.0
    #: Test hook: the fraction of notices to ignore, as if lost (proves the sweep).
    drop_notices: float = 0.0

    @classmethod
    def from_settings(cls, settings: Settings) -> XingqiaoConfig:
        return cls.from_env(settings.service_env("XINGQIAO"))

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> XingqiaoConfig:
        """Read and check every XINGQIAO_* variable (SettingsError names the bad one)."""
        cfg = cls(
            plugin_dir=env.get("XINGQIAO_PLUGIN_DIR", "").strip() or None,
            sweep_interval=env_number(env, "XINGQIAO_SWEEP_INTERVAL", 2.0, 0.05),
            sweep=env_flag(env, "XINGQIAO_SWEEP", True),
            notice_grace=env_number(env, "XINGQIAO_NOTICE_GRACE", 1.0, 0.0),
            job_timeout=int(env_number(env, "XINGQIAO_JOB_TIMEOUT", 3600, 1)),
            task_timeout=env_number(env, "XINGQIAO_TASK_TIMEOUT", 600.0, 0.1),
            retry_delay=env_number(env, "XINGQIAO_RETRY_DELAY", 1.0, 0.0),
            max_retry_delay=env_number(env, "XINGQIAO_MAX_RETRY_DELAY", 3600.0, 0.0),
            result_ttl=env_number(env, "XINGQIAO_RESULT_TTL", 86400.0, 60.0),
            graph_timeout=env_number(env, "XINGQIAO_GRAPH_TIMEOUT", 10.0, 0.5),
            drop_notices=env_number(env, "XINGQIAO_DROP_NOTICES", 0.0, 0.0, 1.0),
        )
        if cfg.max_retry_delay < cfg.retry_delay:
            raise SettingsError("XINGQIAO_MAX_RETRY_DELAY must be >= XINGQIAO_RETRY_DELAY")
        return cfg



def get_config() -> XingqiaoConfig:
    """The config read once at start with the framework settings."""
    from butterfly_common import runtime

    return runtime.get_config(XingqiaoConfig)
