"""demo_log: read the log levels, and (admin only) change one in every worker of core."""

from redis.exceptions import RedisError

from butterfly_common import api, retstat

from ... import loglevels


def _unknown(req, logger: str) -> str:
    req.error_str = f"unknown logger: {logger[:80]!r} (name one the code created, or '' for root)"
    return retstat.ERR_BAD_PARAMS


@api(statuses={retstat.ERR_BAD_PARAMS: retstat.HTTP_BAD_PARAM})
def loglevel_get(req, logger: str = ""):
    """The level set on ``logger`` (the root logger when empty); the same in every worker."""
    if not loglevels.exists(logger):
        return _unknown(req, logger)
    data = {"logger": loglevels.field_of(logger)}
    try:
        loglevels.sync()
    except RedisError:
        data["synced"] = False  # this worker's level; another may differ until Redis is back
    return retstat.OK, {**data, "level": loglevels.level_of(logger)}


@api(admin=True, statuses={retstat.ERR_BAD_PARAMS: retstat.HTTP_BAD_PARAM,
                           retstat.ERR_UNAVAILABLE: retstat.HTTP_UNAVAILABLE})
def loglevel_set(req, level: str, logger: str = ""):
    """Set ``logger``'s level in every worker of core (applied here at once, in the other
    workers within a second; kept until set again). Admin token required."""
    level = level.upper()
    if level not in loglevels.LEVELS:
        req.error_str = f"level must be one of {', '.join(loglevels.LEVELS)}"
        return retstat.ERR_BAD_PARAMS
    if not loglevels.exists(logger):
        return _unknown(req, logger)
    try:
        version = loglevels.publish(logger, level)
    except RedisError as exc:
        req.error_str = f"Redis unavailable, level not changed: {type(exc).__name__}"
        return retstat.ERR_UNAVAILABLE
    req.log_res.add(f"loglevel={level}")
    return retstat.OK, {"logger": loglevels.field_of(logger), "level": level,
                        "applies_to": "every worker of core", "version": version}
