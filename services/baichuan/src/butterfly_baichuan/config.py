"""baichuan's own knobs, read from ``BAICHUAN_*`` variables (kept in ``Settings.extra``).

Parsed once per settings object and checked by the service's ``setup`` hook, so a bad
value stops ``butterfly serve`` at start-up with the variable's name instead of failing
inside a request.
"""

from __future__ import annotations

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


_cache: dict[int, tuple[Settings, BaichuanConfig]] = {}


def config_of(settings: Settings) -> BaichuanConfig:
    """The baichuan config of ``settings`` (raises SettingsError on a malformed value)."""
    hit = _cache.get(id(settings))
    if hit is not None and hit[0] is settings:
        return hit[1]
    extra = dict(settings.extra)
    conf = BaichuanConfig(
        max_message_bytes=int(env_number(extra, "BAICHUAN_MAX_MESSAGE_BYTES",
                                      MAX_MESSAGE_BYTES, 1)),
        max_wait=env_number(extra, "BAICHUAN_MAX_WAIT", MAX_WAIT, 0),
        maintenance_interval=env_number(extra, "BAICHUAN_MAINTENANCE_INTERVAL",
                                     MAINTENANCE_INTERVAL, 0.05),
        prune_workers_after=env_number(extra, "BAICHUAN_PRUNE_WORKERS_AFTER",
                                    PRUNE_WORKERS_AFTER, 1),
    )
    _cache.clear()  # one live settings object per process; keep the cache tiny
    _cache[id(settings)] = (settings, conf)
    return conf


def check_config(settings: Settings) -> None:
    """Service ``setup`` hook: refuse to start on a malformed ``BAICHUAN_*`` value."""
    config_of(settings)
