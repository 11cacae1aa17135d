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

from butterfly_common.config import Config, setting

#: Overlap policies (a fire while the job's previous run is still going): ``allow`` runs it
#: beside; ``skip`` records it skipped; ``buffer_one`` keeps one waiting and skips the
#: rest; ``buffer_all`` keeps up to BUFFER_ALL_LIMIT waiting; ``cancel_other`` stops the
#: running fire (cancel.py) and runs the new one. ``forbid`` is ``skip``'s old name, still
#: accepted and stored as given.
OVERLAPS = ("allow", "skip", "buffer_one", "buffer_all", "cancel_other", "forbid")
OVERLAP_ALIASES = {"forbid": "skip"}
BUFFER_ALL_LIMIT = 100
#: Places in the buffer per policy: the policies that keep the job's overlap state
#: (``allow`` has none: it never waits; ``cancel_other`` never waits either).
BUFFER_LIMITS = {"skip": 0, "buffer_one": 1, "buffer_all": BUFFER_ALL_LIMIT,
                 "cancel_other": 0}
CANCEL_OTHER = "cancel_other"


def _local_zone(env: Mapping[str, str] | None = None) -> str:
    """The machine's zone name (the default of RUQI_TIMEZONE), else UTC."""
    try:
        import tzlocal

        return tzlocal.get_localzone_name() or "UTC"
    except Exception:
        return "UTC"


@dataclass(frozen=True)
class RuqiConfig(Config):
    """Everything ruqi reads from the environment, with its defaults."""

    script_dir: str | None = setting(
        "RUQI_SCRIPT_DIR", None, help="folder that script jobs run from (none: no scripts)")
    timezone: str = setting("RUQI_TIMEZONE", "UTC", env_default=_local_zone,
                            help="zone of cron expressions; default: the machine's zone")
    misfire_grace_time: int = setting("RUQI_MISFIRE_GRACE_TIME", 30, min=1,
                                      help="seconds a late fire may still run")
    coalesce: bool = setting("RUQI_COALESCE", False,
                             help="run missed fires of a job once instead of each")
    overlap: str = setting("RUQI_OVERLAP", "allow", choices=OVERLAPS,
                           help="default overlap policy: allow, skip, buffer_one, buffer_all, "
                                "cancel_other (forbid = skip)")
    timeout: float = setting("RUQI_TIMEOUT", 60.0, min=0.1, help="seconds a job run may take")
    cmd_max_len: int = setting("RUQI_CMD_MAX_LEN", 4096, min=16,
                               help="longest command a job may have (characters)")
    engine: bool = setting("RUQI_ENGINE", True, help="run the scheduling engine in this process")
    workers: int = setting("RUQI_WORKERS", 32, min=1, help="job runs at once per process")
    poll_interval: float = setting("RUQI_POLL_INTERVAL", 0.2, min=0.01,
                                   help="seconds between the engine's polls")
    claim_interval: float = setting(
        "RUQI_CLAIM_INTERVAL", 0.02, min=0.0,
        help="at most one claim round per this many seconds: fires due within it are "
             "claimed in one round trip, at most this much later than their time")
    node_ttl: float = setting("RUQI_NODE_TTL", 3.0, min=0.5,
                              help="seconds a silent engine replica counts as alive")
    coalesce_after: float = setting(
        "RUQI_COALESCE_AFTER", 5.0, min=0.0,
        help="a fire waiting this many seconds past its time is coalesced into the next")
    history_max_age_days: float = setting("RUQI_HISTORY_MAX_AGE_DAYS", 30.0, min=0.0,
                                          help="run history older than this is pruned")
    history_max_per_job: int = setting("RUQI_HISTORY_MAX_PER_JOB", 1000, min=1,
                                       help="runs kept per job")
    history_prune_interval: float = setting("RUQI_HISTORY_PRUNE_INTERVAL", 600.0, min=1.0,
                                            help="seconds between history prunes")
