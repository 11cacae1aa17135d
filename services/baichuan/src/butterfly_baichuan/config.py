"""baichuan's own knobs: ``BAICHUAN_*`` variables, declared as the service's ``config``.

The framework reads and validates them once, with the settings, so a bad value stops
``butterfly serve`` at start-up with the variable's name instead of failing inside a
request; handlers ask ``runtime.get_config(BaichuanConfig)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from butterfly_common.config import Config, setting
from butterfly_common.settings import Settings

MAX_MESSAGE_BYTES = 256 * 1024
MAX_WAIT = 60.0
MAINTENANCE_INTERVAL = 15.0
PRUNE_WORKERS_AFTER = 600.0


def _threads(env: Mapping[str, str]) -> int:
    """gunicorn threads per worker (``BUTTERFLY_THREADS``, checked by the settings)."""
    try:
        return max(1, int((env.get("BUTTERFLY_THREADS") or "8").strip()))
    except ValueError:
        return 8


def _half_the_threads(env: Mapping[str, str]) -> int:
    return max(1, _threads(env) // 2)


@dataclass(frozen=True)
class BaichuanConfig(Config):
    """Limits of the HTTP API and the cadence of the maintenance thread."""

    max_message_bytes: int = setting(
        "BAICHUAN_MAX_MESSAGE_BYTES", MAX_MESSAGE_BYTES, min=1,
        help="largest serialized data publish accepts")
    max_wait: float = setting(
        "BAICHUAN_MAX_WAIT", MAX_WAIT, min=0,
        help="longest long-poll of /baichuan/wait (s); a wait holds one server thread")
    maintenance_interval: float = setting(
        "BAICHUAN_MAINTENANCE_INTERVAL", MAINTENANCE_INTERVAL, min=0.05,
        help="seconds between reap / prune / gauge passes")
    #: Longer than the heartbeat TTL, so a dead worker stays visible (``alive: false``) for
    #: a while; publish checks liveness itself and does not depend on pruning.
    prune_workers_after: float = setting(
        "BAICHUAN_PRUNE_WORKERS_AFTER", PRUNE_WORKERS_AFTER, min=1,
        help="a worker silent this long (s) leaves the registry")
    #: Each wait holds a thread; more answer 429 at once, so waits can never take every
    #: thread (``/healthz`` and every other route keep theirs).
    max_waiters: int = setting(
        "BAICHUAN_MAX_WAITERS", 4, min=1, max=10_000, env_default=_half_the_threads,
        help="wait calls one worker process serves at once; default: half the threads")


def config_of(settings: Settings) -> BaichuanConfig:
    """The baichuan config of ``settings``, parsed afresh (handlers ask the runtime:
    ``runtime.get_config(BaichuanConfig)``, read once at start)."""
    return BaichuanConfig.from_env(settings.service_env("BAICHUAN"))


def check_config(settings: Settings) -> None:
    """Service ``setup`` hook: refuse to start on a malformed ``BAICHUAN_*`` value (the
    framework validates the declared config too; this keeps ``setup`` explicit)."""
    config_of(settings)
