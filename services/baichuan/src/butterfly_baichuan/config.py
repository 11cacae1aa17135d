"""baichuan's own knobs: ``BAICHUAN_*`` variables, declared as the service's ``config``.

The framework reads and validates them once, with the settings, so a bad value stops
``butterfly serve`` at start-up with the variable's name instead of failing inside a
request; handlers ask ``runtime.get_config(BaichuanConfig)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from butterfly_common.settings import Settings, env_number

MAX_MESSAGE_BYTES = 256 * 1024
MAX_WAIT = 60.0
MAINTENANCE_INTERVAL = 15.0
PRUNE_WORKERS_AFTER = 600.0


@dataclass(frozen=True)
class BaichuanConfig:
    """Limits of the HTTP API and the cadence of the maintenance thread."""

    #: ``BAICHUAN_MAX_MESSAGE_BYTES``: largest serialized ``data`` publish accepts.
    max_message_bytes: int = MAX_MESSAGE_BYTES
    #: ``BAICHUAN_MAX_WAIT``: longest long-poll of ``/baichuan/wait`` (seconds); a long
    #: wait holds one server thread, so it is bounded whatever the caller asks.
    max_wait: float = MAX_WAIT
    #: ``BAICHUAN_MAINTENANCE_INTERVAL``: seconds between reap / prune / gauge passes.
    maintenance_interval: float = MAINTENANCE_INTERVAL
    #: ``BAICHUAN_PRUNE_WORKERS_AFTER``: a worker silent this long leaves the registry.
    #: Longer than the heartbeat TTL, so a dead worker stays visible (``alive: false``) for
    #: a while; publish checks liveness itself and does not depend on pruning.
    prune_workers_after: float = PRUNE_WORKERS_AFTER
    #: ``BAICHUAN_MAX_WAITERS``: ``wait`` calls one worker process serves at once (each
    #: holds a thread); more answer 429 at once, so waits can never take every thread
    #: (``/healthz`` and every other route keep theirs). Default: half the threads.
    max_waiters: int = 4

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> BaichuanConfig:
        """Parse BAICHUAN_* variables; SettingsError names the malformed one."""
        return cls(
            max_message_bytes=int(env_number(env, "BAICHUAN_MAX_MESSAGE_BYTES",
                                          MAX_MESSAGE_BYTES, 1)),
            max_wait=env_number(env, "BAICHUAN_MAX_WAIT", MAX_WAIT, 0),
            maintenance_interval=env_number(env, "BAICHUAN_MAINTENANCE_INTERVAL",
                                         MAINTENANCE_INTERVAL, 0.05),
            prune_workers_after=env_number(env, "BAICHUAN_PRUNE_WORKERS_AFTER",
                                        PRUNE_WORKERS_AFTER, 1),
            max_waiters=int(env_number(env, "BAICHUAN_MAX_WAITERS",
                                       max(1, _threads(env) // 2), 1, 10_000)),
        )


def _threads(env: Mapping[str, str]) -> int:
    """gunicorn threads per worker (``BUTTERFLY_THREADS``, checked by the settings)."""
    try:
        return max(1, int((env.get("BUTTERFLY_THREADS") or "8").strip()))
    except ValueError:
        return 8


def config_of(settings: Settings) -> BaichuanConfig:
    """The baichuan config of ``settings``, parsed afresh (handlers ask the runtime:
    ``runtime.get_config(BaichuanConfig)``, read once at start)."""
    return BaichuanConfig.from_env(settings.service_env("BAICHUAN"))


def check_config(settings: Settings) -> None:
    """Service ``setup`` hook: refuse to start on a malformed ``BAICHUAN_*`` value (the
    framework validates the declared config too; this keeps ``setup`` explicit)."""
    config_of(settings)
