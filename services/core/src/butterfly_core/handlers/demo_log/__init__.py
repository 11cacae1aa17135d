"""demo_log: read the log levels, and (admin only) change one in every worker of core."""

from redis.exceptions import RedisError

from butterfly_common import Refusal, Request, api, retstat

from ... import loglevels


def _known(logger: str) -> None:
    if not loglevels.exists(logger):
        raise Refusal(retstat.ERR_BAD_PARAMS, f"unknown logger: {logger[:80]!r} (name one "
                                              "the code created, or '' for root)")


@api
def loglevel_get(req: Request, logger: str = "") -> tuple[str, dict]:
    """The level set on ``logger`` (the root logger when empty); the same in every worker."""
    _known(logger)
    data: dict[str, object] = {"logger": loglevels.field_of(logger)}
    try:
        loglevels.sync()
    except RedisError:
        data["synced"] = False  # this worker's level; another may differ until Redis is back
    return retstat.OK, {**data, "level": loglevels.level_of(logger)}


@api(admin=True)
def loglevel_set(req: Request, level: str, logger: str = "") -> tuple[str, dict]:
    """Set ``logger``'s level in every worker of core (applied here at once, in the other
    workers within a second; kept until set again). Admin token required."""
    level = level.upper()
    if level not in loglevels.LEVELS:
        raise Refusal(retstat.ERR_BAD_PARAMS, f"level must be one of {', '.join(loglevels.LEVELS)}")
    _known(logger)
    try:
        version = loglevels.publish(logger, level)
    except RedisError as exc:
        raise Refusal(retstat.ERR_UNAVAILABLE, "Redis unavailable, level not changed: "
                      f"{type(exc).__name__}", http=retstat.HTTP_UNAVAILABLE) from None
    req.log_res.add(f"loglevel={level}")
    return retstat.OK, {"logger": loglevels.field_of(logger), "level": level,
                        "applies_to": "every worker of core", "version": version}
