"""Ruqi's own settings: ``RUQI_*`` variables, declared as the service's ``config``.

The framework reads them once, with the settings, and a bad value stops start-up naming
the variable; code asks ``runtime.get_config(RuqiConfig)``.

Job defaults follow the original ruqi (30 s misfire grace, no coalescing) rather than
APScheduler's (1 s, coalesce on): a 1 s grace is shorter than the time it takes to notice a
dead replica, so fires it claimed could never be recovered.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from butterfly_common.settings import Settings, SettingsError, env_flag, env_number

OVERLAPS = ("allow", "forbid")


def _local_zone() -> str:
    try:
        import tzlocal

        return tzlocal.get_localzone_name() or "UTC"
    except Exception:
        return "UTC"


@dataclass(frozen=True)
class RuqiConfig:
    """Everything ruqi reads from the environment, with its defaults."""

    script_dir: str | None = None
    timezone: str = "UTC"
    misfire_grace_time: int = 30
    coalesce: bool = False
    overlap: str = "allow"
    timeout: float = 60.0
    cmd_max_len: int = 4096
    engine: bool = True
    workers: int = 32
    poll_interval: float = 0.2
    #: At most one claim round per this many seconds: fires due within it are claimed in
    #: one round trip, at most this much later than their time.
    claim_interval: float = 0.02
    node_ttl: float = 3.0
    #: A fire waiting this many seconds past its time is coalesced into the job's next one.
    coalesce_after: float = 5.0
    history_max_age_days: float = 30.0
    history_max_per_job: int = 1000
    history_prune_interval: float = 600.0

    @classmethod
    def from_settings(cls, settings: Settings) -> RuqiConfig:
        """Parse ``settings``' RUQI_* variables afresh (prefer ``runtime.get_config``)."""
        return cls.from_env(settings.service_env("RUQI"))

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> RuqiConfig:
        """Parse RUQI_* variables; SettingsError names the malformed one."""
        overlap = env.get("RUQI_OVERLAP", "").strip() or "allow"
        if overlap not in OVERLAPS:
            raise SettingsError(f"RUQI_OVERLAP={overlap!r}: expected allow or forbid")
        return cls(
            script_dir=env.get("RUQI_SCRIPT_DIR", "").strip() or None,
            timezone=env.get("RUQI_TIMEZONE", "").strip() or _local_zone(),
            misfire_grace_time=int(env_number(env, "RUQI_MISFIRE_GRACE_TIME", 30, 1)),
            coalesce=env_flag(env, "RUQI_COALESCE", False),
            overlap=overlap,
            timeout=env_number(env, "RUQI_TIMEOUT", 60.0, 0.1),
            cmd_max_len=int(env_number(env, "RUQI_CMD_MAX_LEN", 4096, 16)),
            engine=env_flag(env, "RUQI_ENGINE", True),
            workers=int(env_number(env, "RUQI_WORKERS", 32, 1)),
            poll_interval=env_number(env, "RUQI_POLL_INTERVAL", 0.2, 0.01),
            claim_interval=env_number(env, "RUQI_CLAIM_INTERVAL", 0.02, 0.0),
            node_ttl=env_number(env, "RUQI_NODE_TTL", 3.0, 0.5),
            coalesce_after=env_number(env, "RUQI_COALESCE_AFTER", 5.0, 0.0),
            history_max_age_days=env_number(env, "RUQI_HISTORY_MAX_AGE_DAYS", 30.0, 0.0),
            history_max_per_job=int(env_number(env, "RUQI_HISTORY_MAX_PER_JOB", 1000, 1)),
            history_prune_interval=env_number(env, "RUQI_HISTORY_PRUNE_INTERVAL", 600.0, 1.0),
        )
